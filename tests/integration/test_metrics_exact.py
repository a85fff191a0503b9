"""Every counter and gauge moves by exactly what happened, read from a real ``GET /metrics``.

One daemon (real broker, SQLite file, training worker) goes through a known history:
refused and rejected predictions, a mix of valid, duplicate and bad records, a
promoted first model, a rejected poisoned candidate, a forced promotion and a
rollback. After each step the scraped exposition must match the history exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.ingest.broker import EmbeddedBroker
from daemon.runtime import Daemon
from tests.conftest import produce, record, settings_for, wait_for, wait_run
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2"]
TOKEN = "metrics-token"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


class Scrape:
    """One parsed exposition: ``value(name, **labels)`` with 0 for a series that is absent."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples


def _scrape(client: httpx.Client) -> Scrape:
    return Scrape(client.get("/metrics").text)


def _accounted(scrape: Scrape) -> float:
    """Records whose outcome is counted: stored, duplicate or dead-lettered."""
    return sum(v for (name, _), v in scrape.samples.items()
               if name in ("lifelong_ingest_records_stored_total", "lifelong_ingest_records_duplicate_total",
                           "lifelong_ingest_dead_letters_total"))


def _retrain(client: httpx.Client) -> dict[str, Any]:
    return wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])


def _assert_quality(scrape: Scrape, model: str, sets: dict[str, Any]) -> None:
    for name, values in sets.items():
        if values["n"]:
            assert scrape.value("lifelong_evaluation_accuracy_ratio", model=model, eval_set=name) == pytest.approx(
                values["accuracy"], abs=1e-6), (model, name)
            assert scrape.value("lifelong_evaluation_macro_f1_ratio", model=model, eval_set=name) == pytest.approx(
                values["macro_f1"], abs=1e-6), (model, name)


def test_metrics_follow_the_history_exactly(broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path,
                                            tiny_bert: Path) -> None:
    settings = settings_for(broker, topic, sqlite_url, tmp_path, api={"port": 0, "token": TOKEN}, training={
        "base_model": str(tiny_bert),
        "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
        "buffer": {"size": 30}})
    daemon = Daemon(settings).start()
    try:
        with httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as client:
            # Before any model: one refused (503) and one rejected (413) prediction.
            assert client.post("/v1/predict", json={"texts": ["hi"]}).status_code == 503
            assert client.post("/v1/predict", json={"texts": ["a"] * 65}).status_code == 413
            before = _scrape(client)
            assert before.value("lifelong_predict_requests_total", result="unavailable") == 1
            assert before.value("lifelong_predict_requests_total", result="rejected") == 1
            assert before.value("lifelong_predict_requests_total", result="ok") == 0
            assert before.value("lifelong_training_lease_held") == 1
            assert not any(name == "lifelong_model_info" for name, _ in before.samples)

            # Ingest: 150 valid, 5 re-sent duplicates (same text and label), 7 bad records.
            valid = synthetic_examples(LABELS, 50, seed=1)
            values: list[bytes | None] = [record(e.text, e.label, id=f"v{e.sample_id}") for e in valid]
            values += [record(e.text, e.label, id=f"again{e.sample_id}") for e in valid[:5]]
            bad = {"not_json": [b"{oops", b"plain words"], "missing_text": [json.dumps({"label": "c0"}).encode()],
                   "empty_label": [record("fine text", "")], "wrong_type": [json.dumps({"text": 5, "label": "c0"})
                                                                             .encode()],
                   "null_value": [None], "null_bytes": [record("nul\u0000here", "c1")]}
            for items in bad.values():
                values += items
            produce(broker.bootstrap_servers, topic, values)
            # "consumed" counts at poll time, the outcomes once the batch has committed:
            # wait for the outcomes to account for every record, not only for the poll.
            wait_for(lambda: _accounted(_scrape(client)) == len(values), what="every record stored or dead-lettered")
            ingested = _scrape(client)
            assert ingested.value("lifelong_ingest_records_consumed_total") == 162
            assert ingested.value("lifelong_ingest_records_stored_total") == 150
            assert ingested.value("lifelong_ingest_records_duplicate_total", kind="content") == 5
            assert ingested.value("lifelong_ingest_records_duplicate_total", kind="position") == 0
            for reason, items in bad.items():
                assert ingested.value("lifelong_ingest_dead_letters_total", reason=reason) == len(items), reason
            assert sum(v for (name, _), v in ingested.samples.items()
                       if name == "lifelong_ingest_dead_letters_total") == 7
            status = client.get("/v1/status").json()
            assert ingested.value("lifelong_samples_stored", split="train") == status["samples"]["train"]
            assert ingested.value("lifelong_samples_stored", split="held_out") == status["samples"]["held_out"]
            assert status["samples"]["total"] == 150
            assert ingested.value("lifelong_labels_stored") == 3
            assert ingested.value("lifelong_ingest_last_timestamp_seconds") > 0
            assert ingested.value("lifelong_ingest_database_ok") == 1
            assert ingested.value("lifelong_ingest_consumer_lag_records", topic=topic, partition="0") == 0

            # First model: promoted through the gate.
            first = _retrain(client)
            assert first["outcome"] == "promoted"
            v1 = client.get("/v1/models/v0001").json()
            trained = _scrape(client)
            assert trained.value("lifelong_training_runs_total", outcome="promoted") == 1
            assert trained.value("lifelong_training_runs_total", outcome="rejected") == 0
            assert trained.value("lifelong_training_duration_seconds_count") == 1
            assert trained.value("lifelong_training_triggers_total", reason="manual", result="started") == 1
            assert trained.value("lifelong_training_in_progress") == 0
            assert trained.value("lifelong_training_examples_per_second") > 0
            assert trained.value("lifelong_training_last_success_timestamp_seconds") > 0
            assert trained.value("lifelong_promotions_total", kind="gate") == 1
            assert trained.value("lifelong_model_info", version="v0001", strategy="replay") == 1
            assert trained.value("lifelong_model_labels") == 3
            assert trained.value("lifelong_replay_buffer_samples") == v1["buffer_size"] > 0
            assert trained.value("lifelong_model_promoted_timestamp_seconds") > 0
            _assert_quality(trained, "production", v1["evaluation"]["candidate"])
            _assert_quality(trained, "candidate", v1["evaluation"]["candidate"])

            # A label-flipped (poisoned) batch: the candidate is rejected, production stays.
            flipped = {"c0": "c1", "c1": "c2", "c2": "c0"}
            poisoned = synthetic_examples(LABELS, 80, seed=7)
            produce(broker.bootstrap_servers, topic, [record(e.text, flipped[e.label], id=f"p{e.sample_id}")
                                                      for e in poisoned])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == 390, what="poison stored")
            second = _retrain(client)
            assert second["outcome"] == "rejected"
            v2 = client.get("/v1/models/v0002").json()
            rejected = _scrape(client)
            assert rejected.value("lifelong_training_runs_total", outcome="rejected") == 1
            assert rejected.value("lifelong_training_runs_total", outcome="promoted") == 1
            assert rejected.value("lifelong_training_duration_seconds_count") == 2
            assert rejected.value("lifelong_promotions_total", kind="gate") == 1
            assert rejected.value("lifelong_model_info", version="v0001", strategy="replay") == 1
            _assert_quality(rejected, "candidate", v2["evaluation"]["candidate"])
            _assert_quality(rejected, "production", v2["evaluation"]["production"])
            assert rejected.value("lifelong_candidate_negative_flip_ratio") == pytest.approx(
                v2["evaluation"]["negative_flip_rate"], abs=1e-9)
            assert rejected.value("lifelong_candidate_negative_flip_ratio") > 0

            # Predictions once a model serves.
            assert client.post("/v1/predict", json={"texts": ["c0k1 w3", "c1k0 w2", "c2k2"]}).status_code == 200
            served = _scrape(client)
            assert served.value("lifelong_predict_requests_total", result="ok") == 1
            assert served.value("lifelong_predict_texts_total") == 3
            assert served.value("lifelong_predict_latency_seconds_count") == 1

            # Operator actions: force the rejected version, then roll back.
            assert client.post("/v1/models/v0002/promote", json={"force": True, "reason": "test"}).status_code == 200
            forced = _scrape(client)
            assert forced.value("lifelong_promotions_total", kind="forced") == 1
            assert forced.value("lifelong_model_info", version="v0002", strategy="replay") == 1
            assert not forced.has("lifelong_model_info", version="v0001", strategy="replay")
            assert client.post("/v1/rollback", json={"reason": "test"}).status_code == 200
            rolled = _scrape(client)
            assert rolled.value("lifelong_rollbacks_total") == 1
            assert rolled.value("lifelong_model_info", version="v0001", strategy="replay") == 1
            assert rolled.value("lifelong_promotions_total", kind="gate") == 1
            assert rolled.value("lifelong_training_runs_total", outcome="failed") == 0
    finally:
        daemon.stop()
