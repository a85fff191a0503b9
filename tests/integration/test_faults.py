"""Fault suite: ``lifelong run`` killed with SIGKILL at its most delicate moments, then restarted.

Each case runs the real process on the real broker and a SQLite file, and checks the
same things after the restart: every produced record stored exactly once, no
half-written version on disk, every registered version complete and matching the
checksum the registry recorded, ``production`` served and verified, and a next retrain
that succeeds. The crash points inside a promotion are reached with
:mod:`daemon.failpoints`; the one during training is a SIGKILL from outside while the
worker reports progress.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from daemon import failpoints
from daemon.ingest.broker import EmbeddedBroker, free_port
from learners.worker import PARTIAL_MARKER
from storage import registry
from storage.artifacts import ArtifactStore
from storage.engine import make_engine
from storage.stats import split_counts
from tests.conftest import produce, record, start_lifelong_run, terminate_lifelong_run, wait_for
from tests.reliability_log import record_case
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2", "c3"]
TOKEN = "fault-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
#: Group mode's eviction gap in the group test, shorter than the retrain that runs there.
MAX_POLL_INTERVAL_MS = 12_000
#: A killed trainer's lease must expire before the restarted daemon may train and close its runs.
LEASE_TTL_S = 5


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


class Deployment:
    """One data directory and database, and the ``lifelong run`` processes started on them in turn."""

    def __init__(self, broker: EmbeddedBroker, topic: str, url: str, data_dir: Path, tiny_bert: Path) -> None:
        self.broker, self.topic, self.url, self.data_dir, self.tiny_bert = broker, topic, url, data_dir, tiny_bert
        self.sent = 0
        self.process: subprocess.Popen | None = None
        self.base = ""

    def start(self, *, epochs: int = 6, **env: str) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.process = start_lifelong_run(
            self.broker, self.topic, self.url, self.data_dir, port, LIFELONG_API__TOKEN=TOKEN,
            LIFELONG_TRAINING__BASE_MODEL=str(self.tiny_bert),
            LIFELONG_TRAINING__STRATEGY=f'{{"name": "replay", "learning_rate": 0.005, "epochs": {epochs}, '
                                        '"batch_size": 16, "max_length": 24}',
            LIFELONG_TRAINING__BUFFER__SIZE="60", LIFELONG_TRAINING__LEASE_TTL_S=str(LEASE_TTL_S), **env)
        wait_for(lambda: self.get("/healthz") is not None, timeout_s=60, what="the daemon to answer")

    def get(self, path: str) -> Any:
        try:
            response = httpx.get(self.base + path, headers=HEADERS, timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code < 500 else None

    def send(self, labels: list[str], per_label: int, seed: int) -> None:
        examples = synthetic_examples(labels, per_label, seed=seed)
        self.sent += produce(self.broker.bootstrap_servers, self.topic,
                             [record(e.text, e.label, id=f"{seed}-{e.sample_id}") for e in examples])
        wait_for(lambda: (self.get("/v1/status") or {}).get("samples", {}).get("total", 0) >= self.sent,
                 timeout_s=60, what=f"{self.sent} records stored")

    def retrain(self) -> int:
        return int(httpx.post(self.base + "/v1/retrain", json={}, headers=HEADERS, timeout=10).json()["run_id"])

    def wait_run(self, run_id: int, timeout_s: float = 240) -> dict[str, Any]:
        run: dict[str, Any] = {}

        def ended() -> bool:
            nonlocal run
            run = self.get(f"/v1/runs/{run_id}") or {}
            return run.get("status") not in (None, "running")

        wait_for(ended, timeout_s=timeout_s, what=f"run {run_id} to end")
        return run

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            terminate_lifelong_run(self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def check_consistent(self) -> dict[str, str | None]:
        """What must hold after any crash and restart; returns the aliases."""
        engine = make_engine(self.url)
        store = ArtifactStore(self.data_dir / "models")
        try:
            with Session(engine) as session:
                counts = split_counts(session)
                assert counts.train + counts.held_out == self.sent  # every record stored, none twice
                versions = registry.list_versions(session)
                aliases = {name: registry.get_alias(session, name) for name in (registry.PRODUCTION, registry.PREVIOUS)}
        finally:
            engine.dispose()
        models = self.data_dir / "models"
        assert [p.name for p in models.rglob("*") if PARTIAL_MARKER in p.name] == []
        assert not any((models / ".incoming").iterdir()) if (models / ".incoming").exists() else True
        on_disk = {p.name for p in models.iterdir() if p.name.startswith("v")}
        assert on_disk <= {v.name for v in versions}  # no directory the registry does not know
        for version in versions:
            if version.name in on_disk:
                store.verify(version.name, expected_checksum=version.checksum)
        assert aliases[registry.PRODUCTION] in on_disk
        wait_for(lambda: (self.get("/v1/status") or {}).get("serving")
                 == aliases[registry.PRODUCTION], timeout_s=60, what="production to be served")
        return aliases


@pytest.fixture
def deployment(broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path):
    deployed = Deployment(broker, topic, sqlite_url, tmp_path, tiny_bert)
    try:
        deployed.start()
        deployed.send(LABELS[:2], 50, seed=1)
        first = deployed.wait_run(deployed.retrain())
        assert (first["status"], first["outcome"]) == ("succeeded", "promoted"), first
        deployed.stop()
        yield deployed
    finally:
        deployed.kill()
        for line in (tmp_path / "daemon.log").read_text(errors="replace").splitlines()[-5:]:
            print(line)  # noqa: T201 - shown by pytest only when the test failed


def _after_restart(deployed: Deployment, interrupted_run: int | None, *, case: str,
                   inflicted: str) -> dict[str, str | None]:
    """Restart; the run the kill interrupted (if one was running) ends failed; then a retrain succeeds."""
    killed_at = time.monotonic()
    deployed.start()
    if interrupted_run is not None:
        _closed_as_interrupted(deployed, interrupted_run, killed_at)
    aliases = deployed.check_consistent()
    recovery_s = time.monotonic() - killed_at
    produced_before = deployed.sent
    deployed.send(LABELS, 10, seed=9)
    next_run = deployed.wait_run(deployed.retrain())
    assert next_run["status"] == "succeeded", next_run
    deployed.check_consistent()
    record_case(case, inflicted=inflicted,
                checked="after restart: every record stored once, no partial or unregistered version, every "
                        "version matches the registry's checksum, production served, next retrain succeeds",
                produced=produced_before, stored=produced_before, dead_lettered=0, lost=0,
                recovery_s=round(recovery_s, 1), production=aliases[registry.PRODUCTION],
                next_run=next_run["outcome"], lease_ttl_s=LEASE_TTL_S)
    return aliases


def _closed_as_interrupted(deployed: Deployment, interrupted_run: int, killed_at: float) -> None:
    run: dict[str, Any] = {}

    def closed() -> bool:
        nonlocal run
        run = deployed.get(f"/v1/runs/{interrupted_run}") or {}
        return run.get("status") not in (None, "running")

    wait_for(closed, timeout_s=LEASE_TTL_S + 30, what="the restarted daemon to close the interrupted run")
    assert (run["status"], run["error_reason"]) == ("failed", "interrupted"), run
    recovery_s = time.monotonic() - killed_at
    assert recovery_s < LEASE_TTL_S + 30


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``: the training worker is a grandchild (the fork server's child)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


class TestKilledDuringPromotion:
    def test_after_publish_before_the_decision_production_stays(self, deployment: Deployment) -> None:
        deployment.start(**{failpoints.ENV: failpoints.AFTER_PUBLISH})
        deployment.send(LABELS[2:], 50, seed=2)
        run_id = deployment.retrain()
        assert deployment.process is not None and deployment.process.wait(timeout=240) == -signal.SIGKILL
        log = (deployment.data_dir / "daemon.log").read_text(errors="replace")
        assert f"fault-test hook set (never set this in production): {failpoints.ENV}='after_publish'" in log
        aliases = _after_restart(deployment, run_id, case="SIGKILL after publish, before the decision",
                                 inflicted=f"{failpoints.ENV}={failpoints.AFTER_PUBLISH}: the daemon kills itself "
                                           "once the candidate is published and registered")
        assert aliases == {registry.PRODUCTION: "v0001", registry.PREVIOUS: None}

    def test_after_the_alias_commit_before_serving_the_restart_serves_the_new_version(
            self, deployment: Deployment) -> None:
        deployment.start(**{failpoints.ENV: failpoints.AFTER_ALIAS})
        deployment.send(LABELS[2:], 50, seed=2)
        run_id = deployment.retrain()
        process = deployment.process
        assert process is not None
        wait_for(lambda: process.poll() is not None or (deployment.get(f"/v1/runs/{run_id}") or {}).get("status")
                 not in (None, "running"), timeout_s=240, what="the gate's promotion or the run's end")
        forced = process.poll() is None
        if forced:  # the gate rejected v0002: the operator's forced promotion crosses the point instead
            with contextlib.suppress(httpx.HTTPError):  # the process dies before it answers
                httpx.post(f"{deployment.base}/v1/models/v0002/promote", json={"reason": "fault test"},
                           headers=HEADERS, timeout=30)
        assert process.wait(timeout=60) == -signal.SIGKILL
        aliases = _after_restart(deployment, None if forced else run_id,
                                 case="SIGKILL after the alias commit, before serving",
                                 inflicted=f"{failpoints.ENV}={failpoints.AFTER_ALIAS}: the daemon kills itself "
                                           "once production points at the new version, before it serves it")
        assert aliases == {registry.PRODUCTION: "v0002", registry.PREVIOUS: "v0001"}
        # The kill came before v0002's promotion event left; the restarted trainer sends it
        # (an outbox: the decision row remembers), once, and does not repeat v0001's.
        wait_for(lambda: any(e["version"] == "v0002" for e in _promotion_events(deployment)), timeout_s=60,
                 what="v0002's promotion event after the restart")
        events = _promotion_events(deployment)
        assert [e["version"] for e in events if e["outcome"] in ("promoted", "forced")][:2] == ["v0001", "v0002"]
        assert sum(e["version"] == "v0002" for e in events) == 1 and sum(e["version"] == "v0001" for e in events) == 1
        assert len({e["decision_id"] for e in events}) == len(events)
        engine = make_engine(deployment.url)
        try:
            wait_for(lambda: not _undelivered(engine), timeout_s=30, what="every event recorded as delivered")
        finally:
            engine.dispose()


def _undelivered(engine: Any) -> list[Any]:
    with Session(engine) as session:
        return registry.undelivered_events(session)


def _promotion_events(deployment: Deployment) -> list[dict[str, Any]]:
    """This deployment's promotion events on the (shared) promotions topic, oldest first."""
    import json

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=deployment.broker.bootstrap_servers, enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    try:
        partitions = [TopicPartition("lifelong.promotions", p)
                      for p in sorted(consumer.partitions_for_topic("lifelong.promotions") or {0})]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        messages = list(consumer)
        assert {m.key for m in messages if json.loads(m.value).get("artifact", "").startswith(str(deployment.data_dir))} \
            <= {b"production"}, "every event on one key, so on one partition, in order"
        events = [json.loads(message.value) for message in messages]
    finally:
        consumer.close()
    own = str(deployment.data_dir)
    return sorted((e for e in events if str(e.get("artifact", "")).startswith(own)),
                  key=lambda e: e.get("decision_id") or 0)


class TestKilledDuringTraining:
    def test_sigkill_mid_training_leaves_nothing_half_written(self, deployment: Deployment) -> None:
        deployment.start(epochs=60)
        deployment.send(LABELS[2:], 50, seed=2)
        run_id = deployment.retrain()
        wait_for(lambda: ((deployment.get("/v1/status") or {}).get("progress") or {}).get("step", 0) > 0,
                 timeout_s=90, what="the worker to start training")
        time.sleep(0.5)
        assert deployment.process is not None
        workers = _descendants(deployment.process.pid)
        servers = [pid for pid in _descendants(deployment.process.pid)
                   if "forkserver" in _command(pid) and _descendants(pid)]
        assert len(servers) == 1, "the training worker should be the fork server's child, below the daemon"
        deployment.kill()
        # The orphaned worker dies with its daemon instead of training on (and writing a candidate).
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout_s=10,
                 what="the worker to die with the daemon")
        aliases = _after_restart(deployment, run_id, case="SIGKILL during training",
                                 inflicted="kill -9 of `lifelong run` while its worker reports training progress; "
                                           "the worker dies with it (PR_SET_PDEATHSIG)")
        assert aliases[registry.PRODUCTION] is not None


class TestArtifactWriteFails:
    def test_a_full_disk_in_the_worker_fails_the_run_with_the_reason_and_production_stays(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from learners.worker import MAX_FILE_BYTES_ENV
        from tests.integration.test_lifecycle import _ingest, _lifecycle, _settings, _stage

        settings = _settings(broker, topic, sqlite_url, tmp_path, tiny_bert)
        count = _ingest(broker, topic, settings, _stage(LABELS[:2], 50, seed=1), already=0)
        lifecycle = _lifecycle(settings)
        assert lifecycle.run_cycle(trigger="manual").outcome == "promoted"
        count = _ingest(broker, topic, settings, _stage(LABELS[2:], 50, seed=2), already=count)

        monkeypatch.setenv(MAX_FILE_BYTES_ENV, "4096")  # the worker's writes past 4 KiB fail: EFBIG
        run = lifecycle.run_cycle(trigger="manual")
        assert (run.status, run.error_reason, run.outcome) == ("failed", "error", None), run
        assert "File too large" in (run.error or ""), run.error
        store = lifecycle.store
        assert [p.name for p in store.root.rglob("*") if PARTIAL_MARKER in p.name] == []
        assert list(store.incoming_dir().iterdir()) == []
        with Session(lifecycle.engine) as session:
            assert registry.get_alias(session, registry.PRODUCTION) == "v0001"
            assert [v.name for v in registry.list_versions(session)] == ["v0001"]
            store.verify("v0001", expected_checksum=registry.get_version(session, "v0001").checksum)
        assert lifecycle.predictor.version == "v0001"

        monkeypatch.delenv(MAX_FILE_BYTES_ENV)  # space again: the next retrain goes through
        again = lifecycle.run_cycle(trigger="manual")
        assert again.status == "succeeded", again
        record_case("artifact writes fail (disk full)", inflicted="RLIMIT_FSIZE of 4 KiB on the training worker "
                    f"({MAX_FILE_BYTES_ENV}): saving the candidate fails with EFBIG",
                    checked="run failed with the OS error as its reason; no partial directory; production and "
                            "its files unchanged; the next retrain succeeds",
                    produced=count, lost=0, failed_run_error=(run.error or "")[:80], next_run=again.outcome)


class TestBrokerFrozen:
    def test_sigstop_makes_the_daemon_not_ready_then_it_resumes_with_exact_counts(
        self, sqlite_url: str, tmp_path: Path
    ) -> None:
        """SIGSTOP keeps the broker's socket accepting connections: only a Kafka request shows it is gone."""
        from daemon.ingest.broker import create_topics
        from daemon.runtime import Daemon
        from tests.conftest import settings_for

        frozen_for_s = 30  # the figure: past request_timeout_ms (5 s) several times over
        with EmbeddedBroker(log_path=tmp_path / "tansu.log") as own:
            topic = "frozen.topic"
            create_topics(own.bootstrap_servers, [topic])
            settings = settings_for(own, topic, sqlite_url, tmp_path, api={"port": 0, "token": TOKEN},
                                    kafka={"request_timeout_ms": 5000})
            create_topics(own.bootstrap_servers, [settings.kafka.promotions_topic])
            before = produce(own.bootstrap_servers, topic, [record(f"before {i}", f"l{i % 3}") for i in range(200)])
            daemon = Daemon(settings).start()
            try:
                with httpx.Client(base_url=daemon.api_url or "", headers=HEADERS, timeout=30) as client:
                    wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == before, what="stored")
                    assert client.get("/readyz").status_code == 200
                    pid = own._process.pid  # noqa: SLF001 - the test freezes the broker process itself
                    os.kill(pid, signal.SIGSTOP)
                    frozen_at = time.monotonic()
                    try:
                        wait_for(lambda: client.get("/readyz").status_code == 503, timeout_s=frozen_for_s,
                                 what="not ready while the broker is frozen")
                        not_ready_after_s = time.monotonic() - frozen_at
                        readyz = client.get("/readyz").json()
                        assert readyz["checks"]["broker"] is False and readyz["checks"]["database"] is True
                        assert client.get("/healthz").status_code == 200  # up, only not ready
                        time.sleep(max(0.0, frozen_for_s - (time.monotonic() - frozen_at)))
                    finally:
                        os.kill(pid, signal.SIGCONT)
                    resumed_at = time.monotonic()
                    after = produce(own.bootstrap_servers, topic, [record(f"after {i}", "l0") for i in range(100)])
                    wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == before + after,
                             timeout_s=90, what="the records produced after the freeze")
                    wait_for(lambda: client.get("/readyz").status_code == 200, timeout_s=30, what="ready again")
                    recovery_s = time.monotonic() - resumed_at
                    status = client.get("/v1/status").json()
                    assert status["dead_letters"] == {} and status["samples"]["total"] == before + after
            finally:
                daemon.stop()
        engine = make_engine(sqlite_url)
        with Session(engine) as session:
            counts = split_counts(session)
        engine.dispose()
        assert counts.train + counts.held_out == before + after  # none lost, none twice
        record_case("broker frozen (SIGSTOP)", inflicted=f"SIGSTOP of the broker process for {frozen_for_s} s, then "
                    "SIGCONT; its socket keeps accepting connections meanwhile",
                    checked="/readyz 503 with checks.broker false while frozen (the probe is an ApiVersions "
                            "request, not a TCP connect), /healthz 200, then every record stored once",
                    produced=before + after, stored=counts.train + counts.held_out, dead_lettered=0, lost=0,
                    not_ready_after_s=round(not_ready_after_s, 1), recovery_s=round(recovery_s, 1))


@pytest.mark.postgres
class TestPostgresStopped:
    def test_ingestion_holds_while_postgres_is_down_and_resumes_without_a_restart(
        self, broker: EmbeddedBroker, topic: str, postgres_admin_url: str, tmp_path: Path
    ) -> None:
        from sqlalchemy import func, select

        from daemon.runtime import Daemon
        from storage.engine import upgrade
        from storage.models import Sample
        from tests.conftest import settings_for
        from tests.integration import _postgres

        url, name = _postgres.create_database(postgres_admin_url)
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        settings = settings_for(broker, topic, url, tmp_path, api={"port": 0, "token": TOKEN})
        daemon = Daemon(settings).start()
        stopped = False
        try:
            with httpx.Client(base_url=daemon.api_url or "", headers=HEADERS, timeout=30) as client:
                before = produce(broker.bootstrap_servers, topic, [record(f"pg before {i}", "a") for i in range(200)])
                wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == before, what="stored")
                _postgres.local_cluster_control("stop")
                stopped, stopped_at = True, time.monotonic()
                during = produce(broker.bootstrap_servers, topic, [record(f"pg during {i}", "b") for i in range(300)])
                wait_for(lambda: client.get("/readyz").status_code == 503, timeout_s=60, what="not ready")
                readyz = client.get("/readyz").json()
                assert readyz["checks"]["database"] is False, readyz
                assert daemon.ingestor is not None and daemon.ingestor.health.database_ok is False
                assert client.get("/healthz").status_code == 200
                time.sleep(5)
                _postgres.local_cluster_control("start")
                stopped, started_at = False, time.monotonic()
                down_s = started_at - stopped_at
                wait_for(lambda: (client.get("/v1/status").json().get("samples") or {}).get("total") == before + during,
                         timeout_s=120, what="the records produced while PostgreSQL was down")
                wait_for(lambda: client.get("/readyz").status_code == 200, timeout_s=60, what="ready again")
                recovery_s = time.monotonic() - started_at
        finally:
            if stopped:
                _postgres.local_cluster_control("start")
            daemon.stop()
        engine = make_engine(url)
        with engine.connect() as connection:
            texts = connection.execute(select(Sample.text)).scalars().all()
            count = connection.execute(select(func.count()).select_from(Sample)).scalar_one()
        engine.dispose()
        _postgres.drop_database(postgres_admin_url, name)
        assert count == len(set(texts)) == before + during  # each stored once, none skipped
        record_case("PostgreSQL stopped during ingestion", inflicted="pg_ctlcluster stop -m fast (sessions "
                    f"terminated) for {down_s:.0f} s while 300 records arrive, then start",
                    checked="/readyz 503 with checks.database false, /healthz 200; without a restart every record "
                            "stored once afterwards", produced=before + during, stored=count, dead_lettered=0,
                    lost=before + during - count, recovery_s=round(recovery_s, 1))


@pytest.mark.postgres
class TestPostgresStoppedDuringPromotion:
    def test_the_run_fails_recorded_production_stays_and_the_next_retrain_promotes_without_a_restart(
        self, broker: EmbeddedBroker, topic: str, postgres_admin_url: str, tmp_path: Path, tiny_bert: Path
    ) -> None:
        """PostgreSQL goes away right after the candidate is published, before the decision and the
        alias move: the alias must not half-move, the run must end recorded once the database is back,
        and the same daemon must train and promote again."""
        import threading

        from daemon.runtime import Daemon
        from storage.engine import upgrade
        from tests.conftest import settings_for
        from tests.integration import _postgres

        url, name = _postgres.create_database(postgres_admin_url)
        engine = make_engine(url)
        upgrade(engine)
        settings = settings_for(broker, topic, url, tmp_path, api={"port": 0, "token": TOKEN}, training={
            "base_model": str(tiny_bert), "lease_ttl_s": LEASE_TTL_S, "buffer": {"size": 60},
            "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24}})
        daemon = Daemon(settings).start()
        outage: dict[str, float] = {}

        def stop_postgres_for_a_while() -> None:
            _postgres.local_cluster_control("stop")
            outage["stopped"] = time.monotonic()

            def start_again() -> None:
                time.sleep(6)
                outage["started"] = time.monotonic()
                _postgres.local_cluster_control("start")
                outage["up"] = time.monotonic()

            threading.Thread(target=start_again, daemon=True).start()

        sent = 0

        def send(client: httpx.Client, labels: list[str], seed: int) -> None:
            nonlocal sent
            sent += produce(broker.bootstrap_servers, topic, [record(e.text, e.label, id=f"{seed}-{e.sample_id}")
                                                              for e in synthetic_examples(labels, 40, seed=seed)])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == sent, what=f"{sent} stored")

        def run_to_end(client: httpx.Client, run_id: int) -> dict[str, Any]:
            def ended() -> dict[str, Any] | None:
                try:
                    run = client.get(f"/v1/runs/{run_id}").json()
                except (httpx.HTTPError, ValueError):
                    return None
                return run if run.get("status") not in (None, "running") else None
            wait_for(lambda: ended() is not None, timeout_s=240, what=f"run {run_id} to end")
            return ended() or {}

        try:
            with httpx.Client(base_url=daemon.api_url or "", headers=HEADERS, timeout=30) as client:
                send(client, LABELS[:2], seed=1)
                first = run_to_end(client, client.post("/v1/retrain", json={}).json()["run_id"])
                assert first["outcome"] == "promoted", first
                production = client.get("/v1/status").json()["serving"]
                with Session(engine) as session:
                    before = {a: registry.get_alias(session, a) for a in (registry.PRODUCTION, registry.PREVIOUS)}
                assert before[registry.PRODUCTION] == production
                send(client, LABELS[2:], seed=2)

                failpoints.arm(failpoints.AFTER_PUBLISH, stop_postgres_for_a_while)
                failed = run_to_end(client, client.post("/v1/retrain", json={}).json()["run_id"])
                assert "started" in outage, "the run ended before the database was back"
                assert (failed["status"], failed["error_reason"]) == ("failed", "database_unavailable"), failed
                with Session(engine) as session:
                    aliases = {a: registry.get_alias(session, a) for a in (registry.PRODUCTION, registry.PREVIOUS)}
                    versions = [v.name for v in registry.list_versions(session)]
                assert aliases == before, aliases  # neither alias moved, not one of the two
                assert len(versions) == 2  # the published candidate stays on record, undecided
                assert client.get("/v1/status").json()["serving"] == production

                wait_for(lambda: client.get("/readyz").status_code == 200, timeout_s=60, what="ready again")
                wait_for(lambda: client.get("/v1/status").json()["training"]["lease"]["held_by_this_daemon"],
                         timeout_s=LEASE_TTL_S + 30, what="the lease back")
                recovered = run_to_end(client, client.post("/v1/retrain", json={}).json()["run_id"])
                assert recovered["outcome"] == "promoted", recovered
                recovery_s = time.monotonic() - outage["started"]
                assert client.get("/v1/status").json()["serving"] == recovered["candidate_version"]
                total = client.get("/v1/status").json()["samples"]["total"]
        finally:
            failpoints.disarm(failpoints.AFTER_PUBLISH)
            if "stopped" in outage and "up" not in outage:
                wait_for(lambda: "up" in outage, timeout_s=60, what="PostgreSQL started again")
            daemon.stop()
            engine.dispose()
        _postgres.drop_database(postgres_admin_url, name)
        assert total == sent
        record_case("PostgreSQL stopped during a promotion", inflicted="pg_ctlcluster stop -m fast right after the "
                    "candidate was published, before the decision and the alias move; started again 6 s later",
                    checked="run recorded failed (database_unavailable) once the database was back, production and "
                            "previous aliases unchanged and served, the next retrain promoted without a restart",
                    produced=sent, stored=total, lost=sent - total, recovery_s=round(recovery_s, 1))


@pytest.mark.postgres
class TestGroupMemberKilled:
    def test_a_long_retrain_evicts_no_one_and_the_survivor_of_a_kill_takes_partitions_and_lease(
        self, broker: EmbeddedBroker, make_topic, postgres_admin_url: str, tmp_path: Path, tiny_bert: Path
    ) -> None:
        from sqlalchemy import func, select

        from storage.engine import upgrade
        from storage.models import Sample
        from tests.integration import _postgres

        topic = make_topic(partitions=2)
        url, name = _postgres.create_database(postgres_admin_url)
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        group = {"LIFELONG_KAFKA__ASSIGNMENT": "group", "LIFELONG_KAFKA__GROUP_ID": f"g-{topic}",
                 "LIFELONG_TRAINING__LEASE_TTL_S": str(LEASE_TTL_S), "LIFELONG_API__TOKEN": TOKEN,
                 # A retrain below runs longer than this: the member must not be evicted meanwhile.
                 # (1,000 samples per label: started from the fork server, 100 could end before 1.5x of it.)
                 "LIFELONG_KAFKA__MAX_POLL_INTERVAL_MS": str(MAX_POLL_INTERVAL_MS),
                 "LIFELONG_TRAINING__BASE_MODEL": str(tiny_bert),
                 "LIFELONG_TRAINING__STRATEGY": '{"name": "replay", "learning_rate": 0.005, "epochs": 100, '
                                                '"batch_size": 16, "max_length": 24}'}
        members = []
        for member in ("a", "b"):
            (tmp_path / member).mkdir()
            port = free_port()
            members.append((start_lifelong_run(broker, topic, url, tmp_path / member, port, **group),
                            f"http://127.0.0.1:{port}"))

        def assigned(base: str) -> list[str]:
            try:
                return httpx.get(f"{base}/readyz", timeout=5).json().get("assigned") or []
            except (httpx.HTTPError, ValueError):
                return []

        def stored() -> int:
            check = make_engine(url)
            try:
                with check.connect() as connection:
                    return int(connection.execute(select(func.count()).select_from(Sample)).scalar_one())
            finally:
                check.dispose()

        try:
            # tansu completes a group join in ~23 s; both members must hold a partition first.
            wait_for(lambda: all(assigned(base) for _, base in members), timeout_s=150, what="both members assigned")
            before_training = {base: sorted(assigned(base)) for _, base in members}
            # Enough samples that the retrain outlasts 1.5x max_poll_interval_ms (the suffix keeps
            # each text distinct, so content dedupe stores them all).
            seed = produce(broker.bootstrap_servers, topic, [record(f"{e.text} n{e.sample_id}", e.label,
                                                                    id=f"t{e.sample_id}")
                                                             for e in synthetic_examples(LABELS[:2], 1000, seed=1)])
            wait_for(lambda: stored() == seed, timeout_s=60, what="training data stored")
            trainer = next(base for _, base in members if httpx.get(f"{base}/v1/status", headers=HEADERS,
                                                                    timeout=10).json()["training"]["lease"]
                           ["held_by_this_daemon"])
            run_id = httpx.post(f"{trainer}/v1/retrain", json={}, headers=HEADERS, timeout=10).json()["run_id"]
            training_started = time.monotonic()
            first = seed + produce(broker.bootstrap_servers, topic, [record(f"g before {i}", "a", id=f"b{i}")
                                                                     for i in range(1000)])
            wait_for(lambda: stored() == first, timeout_s=60, what="records stored while the retrain runs")
            time.sleep(max(0.0, (MAX_POLL_INTERVAL_MS / 1000) * 1.5 - (time.monotonic() - training_started)))
            run = httpx.get(f"{trainer}/v1/runs/{run_id}", headers=HEADERS, timeout=10).json()
            assert run["status"] == "running", run  # still training, well past max_poll_interval_ms
            assert {base: sorted(assigned(base)) for _, base in members} == before_training  # no rebalance
            victim, survivor = members
            victim[0].kill()
            victim[0].wait(timeout=10)
            killed_at = time.monotonic()
            second = produce(broker.bootstrap_servers, topic, [record(f"g after {i}", "b", id=f"a{i}")
                                                               for i in range(1000)])
            wait_for(lambda: stored() == first + second, timeout_s=180, what="the survivor to store the rest")
            recovery_s = time.monotonic() - killed_at
            assert sorted(assigned(survivor[1])) == [f"{topic}[0]", f"{topic}[1]"]
            status = httpx.get(f"{survivor[1]}/v1/status", headers=HEADERS, timeout=10).json()
            wait_for(lambda: httpx.get(f"{survivor[1]}/v1/status", headers=HEADERS, timeout=10).json()
                     ["training"]["lease"]["held_by_this_daemon"], timeout_s=LEASE_TTL_S + 30, what="the survivor's lease")
        finally:
            for process, _ in members:
                process.kill()
                process.wait(timeout=10)
        check = make_engine(url)
        with check.connect() as connection:
            ids = connection.execute(select(Sample.external_id)).scalars().all()
        check.dispose()
        _postgres.drop_database(postgres_admin_url, name)
        assert len(ids) == len(set(ids)) == first + second  # every record once, none skipped
        assert status["dead_letters"] == {}
        record_case("group: long retrain, then a member killed (PostgreSQL)", inflicted="two `lifelong run` in "
                    f"one consumer group on one PostgreSQL database, max_poll_interval_ms {MAX_POLL_INTERVAL_MS}; a "
                    "retrain running 1.5x that while 1,000 records arrive; kill -9 of one member, 1,000 more",
                    checked="no rebalance and ingestion goes on during the retrain; the survivor is assigned both "
                            "partitions, takes the training lease, every record stored exactly once", produced=first + second, stored=len(ids), dead_lettered=0,
                    lost=first + second - len(ids), recovery_s=round(recovery_s, 1))
