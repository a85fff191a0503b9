"""Forget requests and retention through a real daemon (broker, SQLite file, HTTP, training worker):
a forgotten sample leaves storage, the logged answers and the next candidate's replay buffer; the
versions that learned it are reported; a rebuild trains a model that never saw it; retention
deletes exactly what is older, in batches, while ingestion goes on."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select, update
from sqlmodel import Session

from daemon.ingest.broker import EmbeddedBroker
from daemon.runtime import Daemon
from storage.models import DataDeletion, ModelVersion, PredictionRecord, Sample, utcnow
from tests.conftest import produce, record, settings_for, wait_for, wait_run
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2"]
TOKEN = "forget-token"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


def _version(url: str, name: str) -> ModelVersion:
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            found = session.get(ModelVersion, name)
            assert found is not None
            return found
    finally:
        engine.dispose()


def _sample_ids_by_external(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            return {ext: i for i, ext in session.execute(select(Sample.id, Sample.external_id))}
    finally:
        engine.dispose()


def test_a_forgotten_sample_leaves_storage_answers_and_buffers_and_a_rebuild_never_saw_it(
        broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path) -> None:
    settings = settings_for(broker, topic, sqlite_url, tmp_path, api={"port": 0, "token": TOKEN},
                            serving={"log_texts": True}, training={
                                "base_model": str(tiny_bert),
                                "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 4, "batch_size": 16,
                                             "max_length": 24},
                                "buffer": {"size": 30}})
    daemon = Daemon(settings).start()
    try:
        with httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as client:
            examples = synthetic_examples(LABELS, 40, seed=1)
            produce(broker.bootstrap_servers, topic,
                    [record(e.text, e.label, id=f"s-{i}") for i, e in enumerate(examples)])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == 120, what="training data")
            first = wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])
            assert first["outcome"] == "promoted", first
            v1 = first["candidate_version"]
            by_external = _sample_ids_by_external(sqlite_url)
            members = set(_version(sqlite_url, v1).buffer_members)
            forgotten = next(ext for ext, i in sorted(by_external.items()) if i in members)
            client.post("/v1/predict", json={"texts": ["an answer to forget"], "ids": [forgotten]})
            wait_for(lambda: any(r.request_id == forgotten for r in _rows(sqlite_url)), what="the answer logged")

            # Bad requests first: nothing named, an unknown id -> nothing deleted.
            assert client.request("DELETE", "/v1/samples", json={}).status_code == 422
            unknown = client.request("DELETE", "/v1/samples", json={"ids": [forgotten, "no-such-id"]})
            assert unknown.status_code == 404 and "no-such-id" in unknown.json()["detail"]
            assert forgotten in _sample_ids_by_external(sqlite_url)

            answer = client.request("DELETE", "/v1/samples",
                                    json={"ids": [forgotten], "reason": "erasure request 17", "actor": "dpo"})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert (body["samples"], body["predictions"], body["versions_affected"]) == (1, 1, [v1])
            assert body["production_learned_forgotten"] is True
            assert forgotten not in _sample_ids_by_external(sqlite_url)
            assert not [r for r in _rows(sqlite_url) if r.request_id == forgotten]
            assert by_external[forgotten] not in _version(sqlite_url, v1).buffer_members
            listed = {m["version"]: m for m in client.get("/v1/models").json()}
            assert listed[v1]["forgotten_samples"] == 1
            audit = client.get("/v1/deletions").json()
            assert audit[0]["actor"] == "dpo" and audit[0]["criteria"] == {"ids": [forgotten]}
            scrape = client.get("/metrics").text
            assert 'lifelong_data_deleted_total{cause="forget",kind="sample"} 1.0' in scrape
            assert "lifelong_production_forgotten_samples 1.0" in scrape

            # The next candidate learns on from v1: its buffer holds no forgotten sample, and it
            # still carries what v1 learned.
            produce(broker.bootstrap_servers, topic,
                    [record(e.text, e.label, id=f"t-{i}") for i, e in enumerate(synthetic_examples(LABELS, 10,
                                                                                                  seed=5))])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == 149, what="more data")
            second = wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])
            assert second["status"] == "succeeded", second
            snapshot = next(s for s in second["steps"] if s["step"] == "snapshot")
            assert snapshot["forgotten_in_buffer"] == 1
            v2 = _version(sqlite_url, second["candidate_version"])
            assert by_external[forgotten] not in v2.buffer_members and len(v2.buffer_members) == 30
            assert v2.forgotten_samples == 1

            # A rebuild after another forget: from the base model, on every remaining training sample.
            other = next(ext for ext in sorted(by_external) if ext != forgotten and ext.startswith("s-"))
            rebuilt = client.request("DELETE", "/v1/samples", json={"ids": [other], "retrain_clean": True}).json()
            run = wait_run(client, rebuilt["rebuild"]["run_id"])
            assert (run["trigger"], run["parent_version"], run["status"]) == ("rebuild", None, "succeeded"), run
            clean = _version(sqlite_url, run["candidate_version"])
            assert (clean.parent, clean.generation, clean.forgotten_samples) == (None, 1, 0)
            remaining_training = client.get("/v1/status").json()["samples"]["train"]
            assert run["train_examples"] == remaining_training
    finally:
        daemon.stop()


def _rows(url: str) -> list[PredictionRecord]:
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            return list(session.execute(select(PredictionRecord)).scalars())
    finally:
        engine.dispose()


def test_retention_deletes_exactly_the_older_rows_in_batches_while_ingestion_goes_on(
        broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(broker, topic, sqlite_url, tmp_path, api={"port": 0, "token": TOKEN},
                            ingest={"retention_days": 30, "retention_batch": 7, "retention_every_s": 1})
    daemon = Daemon(settings).start()
    try:
        produce(broker.bootstrap_servers, topic, [record(f"old text {i}", f"l{i % 3}") for i in range(50)])
        engine = create_engine(sqlite_url)
        try:
            wait_for(lambda: _count(engine) == 50, what="the first records")
            # Age 50 samples past the retention, then keep producing while retention runs.
            with engine.begin() as connection:
                connection.execute(update(Sample).values(ingested_at=utcnow() - timedelta(days=31)))
            for burst in range(5):
                produce(broker.bootstrap_servers, topic,
                        [record(f"new text {burst}-{i}", f"l{i % 3}") for i in range(20)])
            wait_for(lambda: _count(engine) == 100 and _texts(engine, "old") == 0, timeout_s=60,
                     what="old samples expired and new ones stored")
            with Session(engine) as session:
                passes = list(session.execute(select(DataDeletion).where(DataDeletion.cause == "retention")).scalars())
            assert sum(p.samples for p in passes) == 50
            assert max(p.samples for p in passes) <= 7 and len(passes) >= 8  # in batches
            assert _texts(engine, "new") == 100
            assert daemon.metrics.registry.get_sample_value(
                "lifelong_data_deleted_total", {"kind": "sample", "cause": "retention"}) == 50
            status = httpx.get(f"{daemon.api_url}/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()
            assert status["samples"]["total"] == 100  # the label counts were taken down with the rows
        finally:
            engine.dispose()
    finally:
        daemon.stop()


def _count(engine) -> int:  # noqa: ANN001 - an Engine
    with engine.connect() as connection:
        return len(connection.execute(select(Sample.id).where(Sample.text.like("new%") | Sample.text.like("old%"))).all())


def _texts(engine, prefix: str) -> int:  # noqa: ANN001 - an Engine
    with engine.connect() as connection:
        return len(connection.execute(select(Sample.id).where(Sample.text.like(f"{prefix}%"))).all())
