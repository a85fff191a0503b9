"""The prediction log through a real daemon (broker, SQLite file, HTTP): answers stored off the
request path, joined to labeled records that arrive later with the same id, live accuracy exact
on a known history, bad ids refused, and a failing log write never failing a prediction."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlmodel import Session

from daemon.ingest.broker import EmbeddedBroker
from daemon.runtime import Daemon
from storage.models import PredictionRecord, Sample
from tests.conftest import produce, record, settings_for, wait_for, wait_run
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2"]
TOKEN = "log-token"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


def _rows(url: str) -> list[PredictionRecord]:
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            return list(session.execute(select(PredictionRecord).order_by(PredictionRecord.id)).scalars())
    finally:
        engine.dispose()


def _count(url: str, query: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(query)).scalar_one())
    finally:
        engine.dispose()


def test_answers_are_logged_joined_to_later_labels_and_live_accuracy_is_exact(
        broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(broker, topic, sqlite_url, tmp_path, api={"port": 0, "token": TOKEN}, training={
        "base_model": str(tiny_bert),
        "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
        "buffer": {"size": 30}})
    daemon = Daemon(settings).start()
    try:
        with httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as client:
            produce(broker.bootstrap_servers, topic, [record(e.text, e.label) for e in
                                                      synthetic_examples(LABELS, 40, seed=1)])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == 120, what="training data")
            assert wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])["outcome"] == "promoted"

            # Bad ids: 422 naming the field, and nothing logged for them.
            for ids in (["x" * 129], ["same", "same"], [7], ["only one"]):
                texts = ["w1 c0k0"] * (2 if ids == ["same", "same"] else 1) if ids != ["only one"] else ["a", "b"]
                answer = client.post("/v1/predict", json={"texts": texts, "ids": ids})
                assert answer.status_code == 422, (ids, answer.text)
                assert "ids" in json.dumps(answer.json()), answer.text

            probe = synthetic_examples(LABELS, 4, seed=2)[:10]
            ids = [f"req-{i}" for i in range(len(probe))]
            given = client.post("/v1/predict", json={"texts": [e.text for e in probe], "ids": ids}).json()
            assert [p["id"] for p in given["predictions"]] == ids
            generated = client.post("/v1/predict", json={"texts": ["w3 c1k1 w4"] * 5}).json()
            fresh = [p["id"] for p in generated["predictions"]]
            assert len(set(fresh)) == 5 and all(len(i) == 32 and int(i, 16) >= 0 for i in fresh)

            wait_for(lambda: len(_rows(sqlite_url)) == 15, what="15 answers logged")
            rows = _rows(sqlite_url)
            assert [r.request_id for r in rows] == ids + fresh
            assert all(r.version == given["version"] and r.text is None for r in rows)  # serving.log_texts off
            assert rows[0].text_hash == hashlib.sha256(probe[0].text.encode()).hexdigest()
            answered = {p["id"]: p for p in given["predictions"]}
            assert [r.label for r in rows[:10]] == [answered[i]["label"] for i in ids]
            assert [r.abstained for r in rows[:10]] == [answered[i]["abstained"] for i in ids]

            # The truth arrives later: three of the ten with another label than the answer's.
            # (An abstention's truth is its top candidate: it still counts as not answered right.)
            top = {rid: next(iter(p["probabilities"])) for rid, p in answered.items()}
            truths = {rid: (top[rid] if n >= 3 else next(lab for lab in LABELS if lab != top[rid]))
                      for n, rid in enumerate(answered)}
            produce(broker.bootstrap_servers, topic, [record(f"later {e.text}", truths[rid], id=rid)
                                                      for rid, e in zip(ids, probe, strict=True)])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == 130, what="feedback stored")
            right = sum(answered[rid]["label"] == truth for rid, truth in truths.items())
            status = client.get("/v1/status").json()
            assert status["live_accuracy"] == {"version": given["version"], "joined": 10, "correct": right,
                                               "accuracy": right / 10}
            shown = client.get(f"/v1/models/{given['version']}").json()["live_accuracy"]
            assert shown == {"joined": 10, "correct": right, "accuracy": right / 10}  # per version, in its record
            assert _count(sqlite_url, "SELECT count(*) FROM sample WHERE feedback") == 10
            assert _count(sqlite_url, "SELECT count(*) FROM prediction WHERE true_label IS NOT NULL") == 10
            assert daemon.metrics.registry.get_sample_value("lifelong_ingest_feedback_records_total") == 10
            assert daemon.prediction_log is not None
            daemon.prediction_log.refresh_live_accuracy()
            assert daemon.metrics.registry.get_sample_value("lifelong_live_accuracy_ratio") == right / 10
            assert daemon.metrics.registry.get_sample_value("lifelong_live_feedback_samples") == 10

            # The log's table gone: predictions still answer; the failed writes are counted, without text.
            _count(sqlite_url, "SELECT 1")
            engine = create_engine(sqlite_url)
            with engine.begin() as connection:
                connection.execute(text("DROP TABLE prediction"))
            engine.dispose()
            caplog.set_level(logging.WARNING, logger="daemon.serving.prediction_log")
            secret = "w5 c2k2 a secret customer sentence"
            still = client.post("/v1/predict", json={"texts": [secret]})
            assert still.status_code == 200
            wait_for(lambda: (daemon.metrics.registry.get_sample_value("lifelong_prediction_log_failures_total")
                              or 0) >= 1, what="the failed write counted")
            messages = [r.getMessage() for r in caplog.records if r.name == "daemon.serving.prediction_log"]
            assert messages and not any("secret" in m for m in messages)
    finally:
        daemon.stop()


def test_a_version_without_answers_has_no_live_accuracy(sqlite_url: str) -> None:
    from storage.engine import make_engine, upgrade
    from storage.predictions import NewPrediction, live_accuracy, record_predictions

    engine = make_engine(sqlite_url)
    upgrade(engine)
    with Session(engine) as session:
        record_predictions(session, [NewPrediction("r1", "v0001", "a", 0.9, False, "h")])
        assert live_accuracy(session) == {}
        assert session.execute(select(func.count()).select_from(Sample)).scalar_one() == 0
    engine.dispose()
