"""The daemon as operators deploy it: triggers, single flight, the training lease, shutdown.

Everything is real: the tansu broker over TCP, a SQLite file, the API over HTTP, the
training worker process and (for shutdown) ``lifelong run`` as a subprocess.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from daemon.config import Settings
from daemon.ingest.broker import EmbeddedBroker, free_port
from daemon.runtime import Daemon
from learners.worker import PARTIAL_MARKER
from storage import registry
from storage.engine import make_engine
from storage.stats import split_counts
from tests.conftest import (
    produce,
    record,
    settings_for,
    start_lifelong_run,
    terminate_lifelong_run,
    wait_for,
    wait_run,
)
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2", "c3", "c4", "c5"]
STAGE1, STAGE2 = LABELS[:3], LABELS[3:]
TOKEN = "runtime-test-token"
#: Tiny BERT learns the keyword task in seconds with these settings.
TRAINING = {"strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
            "buffer": {"size": 60}}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


def _settings(broker: EmbeddedBroker, topic: str, url: str, data_dir: Path, tiny_bert: Path,
              **sections: Any) -> Settings:
    training = {**TRAINING, "base_model": str(tiny_bert), **sections.pop("training", {})}
    return settings_for(broker, topic, url, data_dir, api={"port": 0, "token": TOKEN}, training=training,
                        **sections)


@pytest.fixture
def start_daemon(broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path,
                 tiny_bert: Path) -> Iterator[Any]:
    started: list[Daemon] = []

    def _start(data_dir: Path | None = None, **sections: Any) -> Daemon:
        daemon = Daemon(_settings(broker, topic, sqlite_url, data_dir or tmp_path, tiny_bert, **sections)).start()
        started.append(daemon)
        return daemon

    yield _start
    for daemon in started:
        if not daemon.stop_event.is_set():
            daemon.stop()


def _client(daemon: Daemon) -> httpx.Client:
    return httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def _send(broker: EmbeddedBroker, topic: str, labels: list[str], per_label: int, seed: int) -> int:
    examples = synthetic_examples(labels, per_label, seed=seed)
    return produce(broker.bootstrap_servers, topic, [record(e.text, e.label, id=f"{seed}-{e.sample_id}")
                                                     for e in examples])


def _accuracy(client: httpx.Client, labels: list[str], seed: int) -> float:
    probe = synthetic_examples(labels, 20, seed=seed)
    answer = client.post("/v1/predict", json={"texts": [e.text for e in probe]}).json()
    got = [next(iter(p["probabilities"])) for p in answer["predictions"]]  # an abstention's top candidate too
    return sum(g == e.label for g, e in zip(got, probe, strict=True)) / len(probe)


def _metric(daemon: Daemon, name: str, labels: dict[str, str] | None = None) -> float:
    value = daemon.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


class TestStagesEndToEnd:
    def test_stage_one_promoted_then_new_labels_learned_without_forgetting(
        self, start_daemon, broker: EmbeddedBroker, topic: str
    ) -> None:
        daemon = start_daemon()
        with _client(daemon) as client:
            sent = _send(broker, topic, STAGE1, 50, seed=1)
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] >= sent, what="stage 1 stored")
            first = client.post("/v1/retrain", json={"requested_by": "test"}).json()
            run = wait_run(client, first["run_id"])
            assert (run["status"], run["outcome"], run["trigger"]) == ("succeeded", "promoted", "manual")
            assert client.get("/v1/status").json()["serving"] == run["candidate_version"]
            stage1 = client.post("/v1/predict", json={"texts": [e.text for e in synthetic_examples(
                STAGE1, 10, seed=7)]}).json()
            # Every answer (and every abstention's top candidate) is one of the labels trained on.
            assert {p["label"] for p in stage1["predictions"] if not p["abstained"]} <= set(STAGE1)
            assert {next(iter(p["probabilities"])) for p in stage1["predictions"]} <= set(STAGE1)
            assert _accuracy(client, STAGE1, seed=7) >= 0.8

            sent += _send(broker, topic, STAGE2, 50, seed=2)
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] >= sent, what="stage 2 stored")
            second = wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])
            assert (second["status"], second["outcome"]) == ("succeeded", "promoted")
            assert _accuracy(client, STAGE2, seed=8) >= 0.8
            assert _accuracy(client, STAGE1, seed=9) >= 0.6  # replay: the old labels are still known

        assert _metric(daemon, "lifelong_training_runs_total", {"outcome": "promoted"}) == 2
        assert _metric(daemon, "lifelong_promotions_total", {"kind": "gate"}) == 2
        assert _metric(daemon, "lifelong_model_info", {"version": second["candidate_version"],
                                                      "strategy": "replay"}) == 1
        assert _metric(daemon, "lifelong_model_labels") == 6
        assert _metric(daemon, "lifelong_training_triggers_total", {"reason": "manual", "result": "started"}) == 2
        assert _metric(daemon, "lifelong_training_in_progress") == 0


class TestTriggers:
    def test_manual_retrain_during_a_scheduled_run_joins_it(
        self, start_daemon, broker: EmbeddedBroker, topic: str
    ) -> None:
        sent = _send(broker, topic, STAGE1, 60, seed=3)
        # Long enough (several schedule ticks) for a tick to land during it: the fork
        # server starts a tiny-model run in under a second, which a 1 s tick can miss.
        slow = {"strategy": {**TRAINING["strategy"], "epochs": 40}}
        daemon = start_daemon(schedule={"interval_s": 1}, training=slow)
        with _client(daemon) as client:
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] >= sent, what="records stored")
            wait_for(lambda: (client.get("/v1/status").json()["last_run"] or {}).get("train_examples", 0) > 0,
                     timeout_s=60, what="a scheduled run that trains")
            scheduled = client.get("/v1/status").json()["last_run"]
            assert scheduled["trigger"] == "schedule" and scheduled["status"] == "running"
            manual = client.post("/v1/retrain", json={"requested_by": "operator"})
            assert manual.status_code == 202
            assert manual.json() == {"run_id": scheduled["id"], "started": False, "rebuild": False}
            wait_run(client, scheduled["id"])
            time.sleep(3)  # more schedule ticks: each starts at most one run, never a backlog
            runs = sorted(client.get("/v1/runs").json(), key=lambda r: r["id"])
        daemon.stop()
        assert all(r["trigger"] == "schedule" for r in runs), "the manual request must not have started a run"
        for earlier, later in zip(runs, runs[1:], strict=False):
            assert later["started_at"] >= earlier["finished_at"], "two runs overlapped"
        assert _metric(daemon, "lifelong_training_triggers_total", {"reason": "manual", "result": "joined"}) == 1
        assert _metric(daemon, "lifelong_training_triggers_total", {"reason": "schedule", "result": "joined"}) >= 1
        assert _metric(daemon, "lifelong_training_schedule_interval_seconds") == 1

    def test_volume_trigger_fires_once_per_threshold_and_min_gap_defers(
        self, start_daemon, broker: EmbeddedBroker, topic: str, sqlite_url: str
    ) -> None:
        daemon = start_daemon(schedule={"volume_threshold": 100, "volume_check_s": 0.3})
        engine = make_engine(sqlite_url)

        def train_samples() -> int:
            with Session(engine) as session:
                return split_counts(session).train

        with _client(daemon) as client:
            _send(broker, topic, STAGE1, 20, seed=4)  # 60 records: below the threshold
            wait_for(lambda: train_samples() >= 50, what="first records stored")
            time.sleep(1.5)
            assert client.get("/v1/runs").json() == []
            _send(broker, topic, STAGE1, 20, seed=5)  # past 100 training samples in total
            wait_for(lambda: len(client.get("/v1/runs").json()) == 1, timeout_s=30, what="the volume run")
            run = client.get("/v1/runs").json()[0]
            assert run["trigger"] == "volume"
            wait_run(client, run["id"])
            _send(broker, topic, STAGE1, 10, seed=6)  # 30 more: not enough for another run
            time.sleep(2.5)
            assert len(client.get("/v1/runs").json()) == 1
            assert client.get("/v1/status").json()["training"]["volume"]["new_training_samples"] < 100
        daemon.stop()
        assert _metric(daemon, "lifelong_training_triggers_total", {"reason": "volume", "result": "started"}) == 1
        engine.dispose()

        # Same database, a daemon with a long minimum gap: the threshold is met again, but
        # the volume trigger waits for the gap to pass.
        gapped = start_daemon(schedule={"volume_threshold": 20, "volume_check_s": 0.3, "min_gap_s": 3600})
        with _client(gapped) as client:
            assert client.get("/v1/status").json()["training"]["volume"]["new_training_samples"] >= 20
            time.sleep(2)
            assert len(client.get("/v1/runs").json()) == 1
            assert _metric(gapped, "lifelong_training_triggers_total", {"reason": "volume", "result": "started"}) == 0
            manual = client.post("/v1/retrain", json={})  # an operator is not held back by the gap
            assert manual.status_code == 202 and manual.json()["started"] is True
            wait_run(client, manual.json()["run_id"])


class TestTrainingLease:
    def test_two_daemons_on_one_database_only_one_trains(
        self, start_daemon, broker: EmbeddedBroker, topic: str, tmp_path: Path
    ) -> None:
        fast_lease = {"lease_ttl_s": 3}
        first = start_daemon(training=fast_lease, serving={"follow_production_s": 0.5})
        second = start_daemon(training=fast_lease, serving={"follow_production_s": 0.5})
        assert (first.lease.held, second.lease.held) == (True, False)
        with _client(first) as one, _client(second) as two:
            refused = two.post("/v1/retrain", json={})
            assert refused.status_code == 409
            assert "another daemon holds the training lease" in refused.json()["detail"]
            assert first.lease.holder in refused.json()["detail"]
            assert two.get("/v1/status").json()["training"]["lease"]["holder"] == first.lease.holder

            sent = _send(broker, topic, STAGE1, 40, seed=10)
            wait_for(lambda: one.get("/v1/status").json()["samples"]["total"] >= sent, what="records stored")
            run = wait_run(one, one.post("/v1/retrain", json={}).json()["run_id"])
            assert run["outcome"] == "promoted"
            # The standby serves what the trainer promoted, without a restart.
            wait_for(lambda: two.get("/v1/status").json()["serving"] == run["candidate_version"],
                     timeout_s=15, what="the standby to follow production")
            assert two.post("/v1/predict", json={"texts": ["hello"]}).status_code == 200

            first.stop()  # a clean stop releases the lease: the standby takes over
            wait_for(lambda: second.lease.held, timeout_s=10, what="the standby to take the lease")
            taken = two.post("/v1/retrain", json={})
            assert taken.status_code == 202 and taken.json()["started"] is True
            wait_run(two, taken.json()["run_id"])
        assert _metric(second, "lifelong_training_triggers_total", {"reason": "manual", "result": "refused"}) == 1
        assert _metric(second, "lifelong_training_lease_held") == 1


    def test_a_finishing_trainer_keeps_the_lease_until_its_run_has_ended(
        self, start_daemon, broker: EmbeddedBroker, topic: str
    ) -> None:
        slow = {"lease_ttl_s": 3, "on_shutdown": "finish",
                "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 40, "batch_size": 8,
                             "max_length": 24}}
        trainer = start_daemon(training=slow)
        standby = start_daemon(training=slow)
        sent = _send(broker, topic, STAGE1, 40, seed=13)
        with _client(trainer) as client:
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] >= sent, what="records stored")
            run_id = client.post("/v1/retrain", json={}).json()["run_id"]
            wait_for(lambda: (client.get("/v1/status").json().get("progress") or {}).get("step", 0) > 0,
                     timeout_s=60, what="training under way")
        stopping = threading.Thread(target=trainer.stop)
        stopping.start()
        standby_held_while_stopping = False
        while stopping.is_alive():
            # Only while the run is active: once it has ended the trainer releases the lease and
            # the rest of its stop (API, logs, broker) may well overlap the standby's takeover.
            running = trainer.coordinator is not None and trainer.coordinator.active_run is not None
            standby_held_while_stopping |= running and standby.lease is not None and standby.lease.held
            time.sleep(0.05)
        assert not standby_held_while_stopping, "the standby took the lease while the trainer was still training"
        with _client(standby) as client:
            assert client.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"
        wait_for(lambda: standby.lease.held, timeout_s=10, what="the standby to take over after the stop")


def _run_process(broker: EmbeddedBroker, topic: str, url: str, data_dir: Path, tiny_bert: Path, port: int,
                 **extra: str) -> subprocess.Popen:
    return start_lifelong_run(
        broker, topic, url, data_dir, port, LIFELONG_API__TOKEN=TOKEN,
        LIFELONG_TRAINING__BASE_MODEL=str(tiny_bert),
        # Long enough training that the signal lands mid-run.
        LIFELONG_TRAINING__STRATEGY='{"name": "replay", "learning_rate": 0.005, "epochs": 40, '
                                    '"batch_size": 8, "max_length": 24}',
        **extra,
    )


class TestShutdown:
    @pytest.mark.parametrize("mode", ["cancel", "finish"])
    def test_sigterm_during_training_exits_zero_and_leaves_no_half_written_version(
        self, mode: str, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path
    ) -> None:
        sent = _send(broker, topic, STAGE1, 40, seed=12)
        port = free_port()
        process = _run_process(broker, topic, sqlite_url, tmp_path, tiny_bert, port,
                               LIFELONG_TRAINING__ON_SHUTDOWN=mode)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            wait_for(lambda: _get(f"{base}/v1/status", headers).get("samples", {}).get("total", 0) >= sent,
                     timeout_s=60, what="records stored")
            run_id = httpx.post(f"{base}/v1/retrain", json={}, headers=headers, timeout=10).json()["run_id"]
            wait_for(lambda: (_get(f"{base}/v1/status", headers).get("progress") or {}).get("step", 0) > 0,
                     timeout_s=90, what="the worker to start training")
            if mode == "cancel":  # SIGUSR1 dumps every thread's stack into the log and changes nothing else
                process.send_signal(signal.SIGUSR1)
                wait_for(lambda: "Current thread" in (tmp_path / "daemon.log").read_text(errors="replace"),
                         timeout_s=10, what="the stack dump")
                assert process.poll() is None and _get(f"{base}/v1/status", headers).get("progress")
            assert terminate_lifelong_run(process, timeout_s=180) == 0
        finally:
            process.kill()

        engine = make_engine(sqlite_url)
        with Session(engine) as session:
            run = registry.get_run(session, run_id)
            versions = registry.list_versions(session)
            assert split_counts(session).train + split_counts(session).held_out == sent  # nothing lost
        engine.dispose()
        models = tmp_path / "models"
        leftovers = [p.name for p in models.rglob("*") if PARTIAL_MARKER in p.name] if models.exists() else []
        assert leftovers == []
        if mode == "cancel":
            assert (run.status, run.error_reason) == ("cancelled", "cancelled")
            assert versions == []
            assert not any(p.name.startswith("v0") for p in models.glob("*")) if models.exists() else True
        else:
            assert (run.status, run.outcome) == ("succeeded", "promoted")
            assert [v.name for v in versions] == [run.candidate_version]
            assert (models / run.candidate_version / "manifest.json").is_file()


def _get(url: str, headers: dict[str, str]) -> dict[str, Any]:
    try:
        return httpx.get(url, headers=headers, timeout=5).json()
    except httpx.HTTPError:
        return {}


class TestFilePermissions:
    def test_start_names_a_shared_config_file_holding_the_token_and_creates_data_private(
        self, broker: EmbeddedBroker, topic: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        import stat

        from daemon.config import load_settings

        config = tmp_path / "lifelong.yaml"
        data = tmp_path / "data"
        config.write_text(f"data_dir: {data}\napi:\n  port: 0\n  token: {TOKEN}\nkafka:\n"
                          f"  bootstrap_servers: [{broker.bootstrap_servers}]\n  topics: [{topic}]\n"
                          "database:\n  auto_migrate: true\n", encoding="utf-8")
        config.chmod(0o644)
        with caplog.at_level("WARNING", logger="daemon.runtime"):
            daemon = Daemon(load_settings(config)).start()
            try:
                with httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"}) as c:
                    assert c.get("/v1/status").status_code == 200
            finally:
                daemon.stop()
        warnings = [r.getMessage() for r in caplog.records if r.name == "daemon.runtime"]
        assert any(f"config file {config} holds secrets (api.token)" in w and f"chmod 600 {config}" in w
                   for w in warnings), warnings
        assert TOKEN not in caplog.text
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "lifelong.db").stat().st_mode) == 0o600
