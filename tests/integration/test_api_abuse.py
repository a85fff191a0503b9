"""Hostile and careless clients against a live daemon serving a model, over real HTTP.

One daemon for the module (real broker, SQLite file, a promoted tiny model), so every
hostile body reaches the code that would break on it: validation, the tokenizer, the
database. Every error body any test here receives is kept and checked at the end for
stack traces, paths and the token.
"""

from __future__ import annotations

import json
import select
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.ingest.broker import EmbeddedBroker, create_topics
from daemon.runtime import Daemon
from storage.engine import make_engine, upgrade
from tests.conftest import produce, record, settings_for, wait_for, wait_run
from tests.reliability_log import record_case
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2"]
TOKEN = "abuse-token-" + uuid.uuid4().hex
#: Every 4xx/5xx body received in this module, checked by the last test for leaks.
ERROR_BODIES: list[tuple[str, int, str]] = []


@pytest.fixture(scope="module")
def served(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with v0001 in production."""
    tmp = tmp_path_factory.mktemp("abuse")
    url = f"sqlite:///{tmp / 'lifelong.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    topic = f"test.{uuid.uuid4().hex[:12]}"
    create_topics(broker.bootstrap_servers, [topic])
    settings = settings_for(broker, topic, url, tmp, kafka={"topic_prefix": f"p{topic[5:]}"},
                            api={"port": 0, "token": TOKEN}, training={
        "base_model": str(build_tiny_bert(tmp / "tiny", LABELS)),
        "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
        "buffer": {"size": 30}})
    create_topics(broker.bootstrap_servers, [settings.kafka.promotions_topic])
    daemon = Daemon(settings).start()
    try:
        sent = produce(broker.bootstrap_servers, topic, [record(e.text, e.label, id=f"a-{e.sample_id}")
                                                         for e in synthetic_examples(LABELS, 50, seed=1)])
        with _client(daemon) as client:
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] >= sent, what="samples stored")
            run = wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])
            assert run["outcome"] == "promoted", run
        yield daemon
    finally:
        daemon.stop()


def _client(daemon: Daemon, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=daemon.api_url or "", headers=headers, timeout=60)


def _send(client: httpx.Client, method: str, path: str, *, content: bytes | None = None) -> httpx.Response:
    response = client.request(method, path, content=content,
                              headers={"Content-Type": "application/json"} if content is not None else None)
    if response.status_code >= 400:
        ERROR_BODIES.append((path, response.status_code, response.text))
    return response


def _rss_bytes() -> int:
    """This process's resident set (the daemon runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _raw_request(address: tuple[str, int], head: str, chunks: list[bytes]) -> tuple[int, int]:
    """Send a request head, then body chunks only while the server has not answered.

    Returns (status, body bytes sent before the answer). The server is first given a
    second to answer from the head alone, which is what a refusal before reading means.
    """
    sent = 0
    response = b""
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(head.encode("latin-1"))
        pending = list(chunks)
        wait = 1.0
        while not response:
            readable, _, _ = select.select([sock], [], [], wait)
            if readable or not pending:
                break
            try:
                sock.sendall(pending.pop(0))
            except OSError:  # closed by the server: its answer is already waiting
                break
            sent += len(chunks[0])
            wait = 0.05
        while b"\r\n" not in response:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            response += data
    assert response, f"no answer after {sent} body bytes"
    status_line = response.split(b"\r\n", 1)[0].decode("latin-1")
    return int(status_line.split()[1]), sent


class TestHostileInputsTable:
    """The issue's table: each input, today's answer and the one expected."""

    def test_lone_surrogates_are_422_naming_the_field(self, served: Daemon) -> None:
        with _client(served) as client:
            cases = [
                ("POST", "/v1/predict", b'{"texts": ["\\ud800"]}', "texts"),
                ("POST", "/v1/predict", b'{"texts": ["ok", "a\\udfffb"]}', "texts"),
                ("POST", "/v1/retrain", b'{"requested_by": "\\ud83d"}', "requested_by"),
                ("POST", "/v1/rollback", b'{"reason": "\\ud800\\ud800"}', "reason"),
                ("POST", "/v1/models/v0001/promote", b'{"actor": "\\udc00"}', "actor"),
            ]
            for method, path, body, field in cases:
                response = _send(client, method, path, content=body)
                assert response.status_code == 422, (path, body, response.text)
                errors = response.json()["detail"]
                assert any(field in error["loc"] for error in errors), errors
                # Ours ("lone surrogate at character N") or pydantic's own, where it parses the raw body.
                assert any("lone surrogate" in error["msg"] or error["type"] == "string_unicode"
                           for error in errors), errors
            # A valid pair (an emoji written as two escapes) is fine and served.
            emoji = _send(client, "POST", "/v1/predict", content=b'{"texts": ["c0k0 \\ud83d\\ude00"]}')
            assert emoji.status_code == 200 and emoji.json()["version"] == "v0001"
        record_case("API: lone surrogate in any body string", inflicted='{"texts": ["\\ud800"]} and the same '
                    "escape in requested_by, reason, actor", checked="422 naming the field; a valid pair is served",
                    requests=len(cases) + 1, status=422)

    def test_nan_and_infinity_bodies_are_422_not_500(self, served: Daemon) -> None:
        with _client(served) as client:
            for body in (b'{"texts": NaN}', b'{"texts": [Infinity]}', b'{"texts": -Infinity}',
                         b'{"requested_by": NaN}', b'NaN'):
                path = "/v1/retrain" if b"requested_by" in body else "/v1/predict"
                response = _send(client, "POST", path, content=body)
                assert response.status_code == 422, (body, response.text)
                assert "NaN" not in response.text and "Infinity" not in response.text  # the input is not echoed
        record_case("API: NaN / Infinity bodies", inflicted='{"texts": NaN} and 4 more', checked="422 without "
                    "echoing the input (a 422 that echoes NaN cannot be serialised: the old 500)", status=422)

    def test_a_422_does_not_echo_a_huge_input(self, served: Daemon) -> None:
        with _client(served) as client:
            response = _send(client, "POST", "/v1/predict", content=json.dumps({"texts": "x" * 1_000_000}).encode())
            assert response.status_code == 422 and len(response.content) < 1000

    def test_run_ids_beyond_the_database_integer_are_422(self, served: Daemon) -> None:
        with _client(served) as client:
            for run_id in ("99999999999999999999999", str(2**63), "0", "-1"):
                response = _send(client, "GET", f"/v1/runs/{run_id}")
                assert response.status_code == 422, (run_id, response.text)
                assert response.json()["detail"][0]["loc"] == ["path", "run_id"]
            assert _send(client, "GET", f"/v1/runs/{2**63 - 1}").status_code == 404
            assert _send(client, "GET", "/v1/runs/1").json()["status"] == "succeeded"
        record_case("API: run id beyond a database integer", inflicted="GET /v1/runs/99999999999999999999999, 2^63, "
                    "0, -1", checked="422 at loc [path, run_id]; 2^63-1 is a 404", status=422)

    def test_deeply_nested_json_is_a_4xx(self, served: Daemon) -> None:
        with _client(served) as client:
            response = _send(client, "POST", "/v1/predict", content=b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
            assert 400 <= response.status_code < 500, response.text

    def test_a_50_mb_body_without_the_token_is_refused_before_it_is_read(self, served: Daemon) -> None:
        host, port = httpx.URL(served.api_url or "").host, httpx.URL(served.api_url or "").port
        size = 50 * 1024 * 1024
        chunk = b"[" * (256 * 1024)
        before = _rss_bytes()
        for _ in range(3):
            status, sent = _raw_request((host, port), (
                f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {size}\r\n\r\n"), [chunk] * 200)
            assert (status, sent) == (401, 0)  # answered from the head: not one body byte was needed
        # With the token, a declared length over the limit is refused from the header alone.
        status, sent = _raw_request((host, port), (
            f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"), [chunk] * 200)
        assert (status, sent) == (413, 0)
        # Without a length (chunked), reading stops at the limit.
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        status, sent = _raw_request((host, port), (
            f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"), [framed] * 200)
        assert status == 413 and sent < size // 2
        growth = _rss_bytes() - before
        assert growth < 40 * 1024 * 1024, f"RSS grew by {growth / 2**20:.0f} MiB for 5 refused 50 MB bodies"
        record_case("API: 50 MB bodies", inflicted="3 x 50 MB declared without the token, 50 MB declared with it, "
                    "50 MB chunked with it", checked="401 / 413 from the headers before any body byte; chunked "
                    "refused at the limit", body_bytes_read_before_401=0, chunked_bytes_sent_before_413=sent,
                    rss_growth_mib=round(growth / 2**20, 1))
        with _client(served) as client:  # and the daemon still serves
            assert _send(client, "POST", "/v1/predict", content=b'{"texts": ["c1k0"]}').status_code == 200

    def test_a_body_at_the_predict_limits_is_still_accepted(self, served: Daemon) -> None:
        limits = served.settings.serving
        texts = ["\u00e9" * limits.max_text_chars] * limits.max_batch  # json.dumps writes \\u00e9: 6 bytes a char
        body = json.dumps({"texts": texts}).encode()
        assert len(body) > 3_800_000
        with _client(served) as client:
            response = _send(client, "POST", "/v1/predict", content=body)
        assert response.status_code == 200, response.text[:300]
        assert len(response.json()["predictions"]) == limits.max_batch


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
#: Bodies: arbitrary bytes, arbitrary JSON, and objects that use the routes' own field names.
_bodies = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({}, optional={
        "texts": st.lists(st.text(max_size=30), max_size=5) | _json,
        "reason": st.text(max_size=20) | _json, "actor": st.text(max_size=20) | _json,
        "force": st.just(False) | _json, "requested_by": st.text(max_size=20) | _json,
    }).map(lambda value: json.dumps(value).encode()),
)
#: Every route that reads a body, and the read-only ones with path or query input. Promotion
#: targets a version that does not exist and force is off, so no body can move production.
_routes = st.sampled_from([
    ("POST", "/v1/predict"), ("POST", "/v1/models/v0099/promote"), ("POST", "/v1/rollback"),
    ("POST", "/v1/retrain"),
])


class TestNoBodyGetsA500:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(route=_routes, body=_bodies)
    def test_any_body_on_any_route(self, served: Daemon, route: tuple[str, str], body: bytes) -> None:
        with _client(served) as client:
            response = _send(client, route[0], route[1], content=body)
        assert response.status_code < 500, (route, body, response.text)

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(segment=st.text(min_size=1, max_size=40), limit=st.text(max_size=12))
    def test_any_path_or_query_value(self, served: Daemon, segment: str, limit: str) -> None:
        quoted = quote(segment, safe="")
        with _client(served) as client:
            for path in (f"/v1/models/{quoted}", f"/v1/runs/{quoted}"):
                assert _send(client, "GET", path).status_code < 500, path
            response = client.get("/v1/runs", params={"limit": limit})
            if response.status_code >= 400:
                ERROR_BODIES.append(("/v1/runs?limit", response.status_code, response.text))
            assert response.status_code < 500, limit


def test_zz_no_error_body_leaks_a_trace_a_path_or_the_token(served: Daemon) -> None:
    """Runs last in the module (name order within the file is definition order): checks what the others got."""
    assert len(ERROR_BODIES) > 100, "the tests above should have produced many error responses"
    data_dir = str(served.settings.data_dir)
    for path, status, body in ERROR_BODIES:
        for secret in ("Traceback", 'File "', "site-packages", data_dir, TOKEN, "/tmp/", "sqlalchemy"):
            assert secret not in body, (path, status, secret, body[:300])
    record_case("API: hypothesis bodies, paths and queries on every route", inflicted="arbitrary bytes, arbitrary "
                "JSON and the routes' own fields with arbitrary values; arbitrary path segments and limits",
                checked="no 5xx; no error body holds a traceback, a path or the token",
                error_bodies_checked=len(ERROR_BODIES), server_errors=sum(s >= 500 for _, s, _ in ERROR_BODIES))
