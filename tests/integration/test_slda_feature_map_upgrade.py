"""An ``slda`` lineage started without the random feature map (before it existed, or with
``slda_random_features: 0``) keeps its pooled features on every retrain, because its
statistics live in that space; ``POST /v1/retrain {"rebuild": true}`` is how an operator
moves it onto the map. Real broker, SQLite file, HTTP and training worker; the daemon is
restarted with the new setting the way an upgrade would."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from daemon.ingest.broker import EmbeddedBroker
from daemon.runtime import Daemon
from learners.model import CLASSIFIER_FILE
from tests.conftest import produce, record, settings_for, wait_for, wait_run
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["m0", "m1", "m2"]
NEW_LABELS = ["m3", "m4"]
TOKEN = "map-token"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


def _random_features(client: httpx.Client, version: str) -> int:
    artifact = Path(client.get(f"/v1/models/{version}").json()["artifact_path"])
    return json.loads((artifact / CLASSIFIER_FILE).read_text())["random_features"]


def _daemon(broker: EmbeddedBroker, topic: str, url: str, tmp_path: Path, tiny_bert: Path, width: int) -> Daemon:
    settings = settings_for(broker, topic, url, tmp_path, api={"port": 0, "token": TOKEN}, training={
        "base_model": str(tiny_bert), "buffer": {"size": 30},
        "strategy": {"name": "slda", "max_length": 24, "slda_random_features": width}})
    return Daemon(settings).start()


def _client(daemon: Daemon) -> httpx.Client:
    return httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def test_a_pooled_lineage_keeps_its_features_until_a_rebuild_moves_it_onto_the_map(
        broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path) -> None:
    old = _daemon(broker, topic, sqlite_url, tmp_path, tiny_bert, width=0)
    try:
        with _client(old) as client:
            produce(broker.bootstrap_servers, topic,
                    [record(e.text, e.label, id=f"a-{i}") for i, e in enumerate(synthetic_examples(LABELS, 30, seed=1))])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == 90, what="first data")
            first = wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])
            assert first["outcome"] == "promoted", first
            assert _random_features(client, first["candidate_version"]) == 0
    finally:
        old.stop()

    upgraded = _daemon(broker, topic, sqlite_url, tmp_path, tiny_bert, width=48)
    try:
        with _client(upgraded) as client:
            produce(broker.bootstrap_servers, topic,
                    [record(e.text, e.label, id=f"b-{i}")
                     for i, e in enumerate(synthetic_examples(NEW_LABELS, 30, seed=2, start_id=500))])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == 150, what="second data")
            child = wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])
            assert child["status"] == "succeeded" and child["parent_version"] == first["candidate_version"], child
            # The child adds to its parent's statistics, so it must read the same (pooled) features.
            assert _random_features(client, child["candidate_version"]) == 0

            rebuilt = wait_run(client, client.post("/v1/retrain", json={"rebuild": True}).json()["run_id"])
            assert (rebuilt["trigger"], rebuilt["parent_version"], rebuilt["status"]) == ("rebuild", None, "succeeded")
            assert _random_features(client, rebuilt["candidate_version"]) == 48
            assert rebuilt["train_examples"] == client.get("/v1/status").json()["samples"]["train"]
            detail = client.get(f"/v1/models/{rebuilt['candidate_version']}").json()
            assert set(detail["label_names"]) == set(LABELS + NEW_LABELS)
    finally:
        upgraded.stop()
