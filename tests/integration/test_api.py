"""The control API over real HTTP against a running daemon (real broker, SQLite, worker process)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from daemon.ingest.broker import EmbeddedBroker
from daemon.runtime import Daemon
from tests.conftest import produce, record, settings_for, wait_for, wait_run
from tests.integration.test_cli import lifelong
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2", "c3", "c4", "c5"]
TOKEN = "test-token-123"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


@pytest.fixture
def daemon(broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path):
    from daemon.ingest.broker import create_topics

    settings = settings_for(broker, topic, sqlite_url, tmp_path, kafka={"topic_prefix": f"p{topic[5:]}"},
                            api={"port": 0, "token": TOKEN}, training={
        "base_model": str(tiny_bert),
        "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
        "buffer": {"size": 60}})
    create_topics(broker.bootstrap_servers, [settings.kafka.promotions_topic])
    running = Daemon(settings).start()
    yield running
    running.stop()


def _client(daemon: Daemon, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=daemon.api_url or "", headers=headers, timeout=60)


def _retrain(client: httpx.Client) -> dict:
    return wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])


def _stream(broker: EmbeddedBroker, topic: str, labels, seed: int, start: int) -> int:
    return produce(broker.bootstrap_servers, topic, [record(e.text, e.label, id=f"{seed}-{e.sample_id}")
                                                     for e in synthetic_examples(labels, 50, seed=seed)])


class TestAuthAndErrors:
    def test_v1_needs_the_token_and_health_metrics_do_not(self, daemon: Daemon) -> None:
        with _client(daemon, token=None) as anonymous, _client(daemon, token="wrong") as wrong:
            for path in ("/v1/status", "/v1/models", "/v1/runs"):
                assert anonymous.get(path).status_code == 401
                assert wrong.get(path).status_code == 401
            assert anonymous.post("/v1/predict", json={"texts": ["x"]}).status_code == 401
            assert anonymous.get("/healthz").status_code == 200
            assert anonymous.get("/metrics").status_code == 200
            assert anonymous.get("/openapi.json").status_code == 200

    def test_bad_requests_get_clear_4xx(self, daemon: Daemon) -> None:
        with _client(daemon) as client:
            no_model = client.post("/v1/predict", json={"texts": ["hello"]})
            assert (no_model.status_code, no_model.json()["detail"]) == (
                503, "no production model yet: nothing has been promoted")
            unknown_field = client.post("/v1/predict", json={"texts": ["a"], "txt": 1})
            assert unknown_field.status_code == 422 and "txt" in unknown_field.text
            wrong_type = client.post("/v1/predict", json={"texts": "not a list"})
            assert wrong_type.status_code == 422 and "texts" in wrong_type.text
            too_many = client.post("/v1/predict", json={"texts": ["a"] * 65})
            assert (too_many.status_code, too_many.json()["detail"]) == (413, "65 texts exceed the batch limit of 64")
            too_long = client.post("/v1/predict", json={"texts": ["a" * 10_001]})
            assert too_long.status_code == 413 and "texts[0] has 10001 characters" in too_long.text
            assert client.get("/v1/models/v0042").status_code == 404
            unknown = client.post("/v1/models/v0042/promote", json={"reason": "typo"})
            assert (unknown.status_code, unknown.json()["detail"]) == (404, "version 'v0042' does not exist")
            assert client.post("/v1/models/../../etc/promote").status_code == 404
            rollback = client.post("/v1/rollback", json={"reason": "nothing to roll back"})
            assert (rollback.status_code, rollback.json()["detail"]) == (409, "no previous version to roll back to")
            bad_json = client.post("/v1/rollback", content=b"{not json", headers={"Content-Type": "application/json"})
            assert bad_json.status_code == 422


    def test_every_body_is_strict_and_422_names_the_field(self, daemon: Daemon) -> None:
        with _client(daemon) as client:
            cases = [
                ("POST", "/v1/retrain", {"requested_by": "x", "bogus": 1}, "bogus"),
                ("POST", "/v1/retrain", {"requested_by": 42}, "requested_by"),
                ("POST", "/v1/models/v0001/promote", {"force": "maybe"}, "force"),
                ("POST", "/v1/models/v0001/promote", {"actor": ""}, "actor"),
                ("POST", "/v1/rollback", {"reason": ["not", "a", "string"]}, "reason"),
                ("POST", "/v1/rollback", {"why": "typo'd field"}, "why"),
                ("POST", "/v1/predict", {"texts": [1, 2]}, "texts"),
                ("GET", "/v1/runs?limit=lots", None, "limit"),
            ]
            for method, path, body, field in cases:
                response = client.request(method, path, json=body)
                assert response.status_code == 422, (path, body, response.text)
                locations = [error["loc"] for error in response.json()["detail"]]
                assert any(field in location for location in locations), (path, body, locations)

    def test_cli_against_a_daemon_that_is_not_running_says_so_in_one_line(self, tmp_path: Path) -> None:
        from daemon.ingest.broker import free_port

        url = f"http://127.0.0.1:{free_port()}"
        for args in (["status"], ["retrain"], ["models", "list"], ["predict", "hello"]):
            result = lifelong(*args, "--url", url, "--token", "t", timeout=60)
            assert result.returncode != 0, args
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "cannot reach the lifelong daemon" in lines[0], (args, result.stderr)


class TestModelLifecycleOverHttp:
    def test_retrain_promote_event_predict_swap_rollback(
        self, daemon: Daemon, broker: EmbeddedBroker, topic: str
    ) -> None:
        events = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False)
        promotions = TopicPartition(daemon.settings.kafka.promotions_topic, 0)
        events.assign([promotions])
        events.seek_to_beginning(promotions)
        with _client(daemon) as client:
            sent = _stream(broker, topic, LABELS[:3], seed=1, start=0)
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] >= sent, what="stage 1 stored")
            run = _retrain(client)
            assert (run["status"], run["outcome"], run["candidate_version"]) == ("succeeded", "promoted", "v0001")

            got = client.post("/v1/predict", json={"texts": ["w1 c0k0 w2", "c2k1 w5"]}).json()
            assert got["version"] == "v0001"
            assert [next(iter(p["probabilities"])) for p in got["predictions"]] == ["c0", "c2"]
            assert all(p["label"] == (None if p["abstained"] else next(iter(p["probabilities"])))
                       for p in got["predictions"])
            assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-3 for p in got["predictions"])

            sent += _stream(broker, topic, LABELS[3:], seed=2, start=sent)
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] >= sent, what="stage 2 stored")

            # Hammer predict while the second retrain promotes and swaps the model.
            answers: list[int] = []
            versions: set[str] = set()
            stop = threading.Event()

            def hammer() -> None:
                with _client(daemon) as own:
                    while not stop.is_set():
                        response = own.post("/v1/predict", json={"texts": ["w1 c1k2", "c4k0 w9"]})
                        answers.append(response.status_code)
                        if response.status_code == 200:
                            versions.add(response.json()["version"])

            threads = [threading.Thread(target=hammer) for _ in range(3)]
            for thread in threads:
                thread.start()
            run = _retrain(client)
            time.sleep(0.5)
            stop.set()
            for thread in threads:
                thread.join()
            assert (run["outcome"], run["candidate_version"]) == ("promoted", "v0002")
            assert answers and set(answers) == {200}
            assert versions == {"v0001", "v0002"}
            assert client.post("/v1/predict", json={"texts": ["c4k0 w9"]}).json()["version"] == "v0002"

            models = client.get("/v1/models").json()
            assert [(m["version"], m["aliases"]) for m in models] == [("v0001", ["previous"]),
                                                                      ("v0002", ["production"])]
            shown = client.get("/v1/models/v0002").json()
            assert shown["parent"] == "v0001" and shown["decisions"][0]["outcome"] == "promoted"

            back = client.post("/v1/rollback", json={"reason": "canary failed", "actor": "alice"}).json()
            assert back == {"production": "v0001", "rolled_back_from": "v0002", "outcome": "rolled_back"}
            assert client.post("/v1/predict", json={"texts": ["w1"]}).json()["version"] == "v0001"
            again = client.post("/v1/rollback", json={"reason": "twice"})
            assert again.status_code == 409

        received = []
        deadline = time.monotonic() + 20
        while len(received) < 3 and time.monotonic() < deadline:
            received += events.poll(timeout_ms=500).get(promotions, [])
        events.close()
        payloads = [json.loads(m.value) for m in received]
        assert [(p["version"], p["outcome"]) for p in payloads] == [
            ("v0001", "promoted"), ("v0002", "promoted"), ("v0001", "rolled_back")]
        for payload in payloads:
            assert payload["checksum"] == daemon.lifecycle.store.read_manifest(payload["version"]).checksum
        assert payloads[1]["parent"] == "v0001"

        # The CLI drives the same daemon.
        env = {"LIFELONG_URL": daemon.api_url, "LIFELONG_TOKEN": TOKEN}
        listed = lifelong("models", "list", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert [m["version"] for m in json.loads(listed.stdout)] == ["v0001", "v0002"]
        forced = lifelong("models", "promote", "v0002", "--reason", "fixed the canary", "--json", env=env)
        assert forced.returncode == 0, forced.stderr
        assert json.loads(forced.stdout)["outcome"] == "forced"
        predicted = lifelong("predict", "c5k2 w1", "--json", env=env)
        assert json.loads(predicted.stdout)["version"] == "v0002"
        reported = lifelong("status", "--json", env=env)
        assert reported.returncode == 0, reported.stderr
        assert (json.loads(reported.stdout)["serving"], json.loads(reported.stdout)["training"]["lease"][
            "held_by_this_daemon"]) == ("v0002", True)
        table = lifelong("status", env=env)
        assert table.returncode == 0 and "this daemon" in table.stdout and "v0002" in table.stdout
        runs = lifelong("runs", "list", "--json", env=env)
        assert runs.returncode == 0, runs.stderr
        listed_runs = json.loads(runs.stdout)
        assert [r["candidate_version"] for r in listed_runs] == ["v0002", "v0001"]
        shown = lifelong("runs", "show", str(listed_runs[-1]["id"]), env=env)
        assert shown.returncode == 0 and "- train: ok" in shown.stdout and "- decide: ok" in shown.stdout
        missing = lifelong("runs", "show", "999", env=env)
        assert missing.returncode == 1 and missing.stderr.startswith("error: 404")
