"""The drift trigger through a real daemon: served traffic that stays in the trained domain
does not fire it; traffic that moves to a domain the model never saw fires one retrain,
``trigger: drift``, through the same single-flight door as the other triggers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from daemon.ingest.broker import EmbeddedBroker
from daemon.runtime import Daemon
from tests.conftest import produce, record, settings_for, wait_for, wait_run
from tests.integration.test_out_of_scope import UNSEEN, _out_of_scope
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2"]
TOKEN = "drift-token"
CHECK_S = 0.3


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), [*LABELS, *UNSEEN])


def _runs(client: httpx.Client) -> list[dict]:
    return sorted(client.get("/v1/runs").json(), key=lambda r: r["id"])


def test_a_shift_to_an_unseen_domain_fires_one_drift_retrain_and_stable_traffic_none(
        broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path) -> None:
    settings = settings_for(broker, topic, sqlite_url, tmp_path, api={"port": 0, "token": TOKEN}, training={
        "base_model": str(tiny_bert),
        "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
        "buffer": {"size": 30}}, drift={"enabled": True, "check_s": CHECK_S, "min_samples": 100,
                                            "embedding_window": 0},
        evaluation={"oos_label": "oos"})
    daemon = Daemon(settings).start()
    try:
        with httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as client:
            drift = client.get("/v1/status").json()["training"]["drift"]
            assert drift["low_confidence"]["state"] == "insufficient data"  # nothing served yet: never fires on it
            # Labeled out-of-scope examples set the abstain threshold the detector's signal uses.
            produce(broker.bootstrap_servers, topic, [record(e.text, e.label) for e in
                                                      synthetic_examples(LABELS, 60, seed=1)]
                    + [record(t, "oos") for t in _out_of_scope(200, seed=9)])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == 380, what="training data")
            assert wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])["outcome"] == "promoted"

            # Stable traffic, well past min_samples: no drift.
            stable = [e.text for e in synthetic_examples(LABELS, 100, seed=2)]
            for start in range(0, len(stable), 50):
                assert client.post("/v1/predict", json={"texts": stable[start:start + 50]}).status_code == 200
            time.sleep(4 * CHECK_S)
            drift = client.get("/v1/status").json()["training"]["drift"]
            assert drift["low_confidence"]["state"] == "stable" and drift["low_confidence"]["samples"] == 300, drift
            assert [r["trigger"] for r in _runs(client)] == ["manual"]

            # The traffic moves to texts no intent covers: one drift retrain.
            shifted = _out_of_scope(600, seed=3)
            for start in range(0, len(shifted), 50):
                client.post("/v1/predict", json={"texts": shifted[start:start + 50]})
                time.sleep(CHECK_S)
                if any(r["trigger"] == "drift" for r in _runs(client)):
                    break
            drifted = [r for r in _runs(client) if r["trigger"] == "drift"]
            assert len(drifted) == 1, _runs(client)
            assert drifted[0]["requested_by"] == "drift:low_confidence"
            wait_run(client, drifted[0]["id"])
            time.sleep(4 * CHECK_S)
            assert sum(r["trigger"] == "drift" for r in _runs(client)) == 1  # the detector started over
            registry = daemon.metrics.registry
            assert registry.get_sample_value("lifelong_drift_detected_total", {"detector": "low_confidence"}) == 1
            assert registry.get_sample_value("lifelong_drift_detected_total", {"detector": "label_mix"}) == 0
            assert registry.get_sample_value("lifelong_training_triggers_total",
                                             {"reason": "drift", "result": "started"}) == 1
    finally:
        daemon.stop()


def test_a_change_in_the_label_mix_fires_one_drift_retrain(
        broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path) -> None:
    settings = settings_for(broker, topic, sqlite_url, tmp_path, api={"port": 0, "token": TOKEN}, training={
        "base_model": str(tiny_bert),
        "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
        "buffer": {"size": 30}}, drift={"enabled": True, "check_s": CHECK_S, "min_samples": 100,
                                            "embedding_window": 0})
    daemon = Daemon(settings).start()
    try:
        with httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as client:
            sent = produce(broker.bootstrap_servers, topic, [record(e.text, e.label) for e in
                                                             synthetic_examples(LABELS, 40, seed=1)])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == sent, what="training data")
            assert wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])["outcome"] == "promoted"

            # More of the same mix: stable.
            sent += produce(broker.bootstrap_servers, topic, [record(e.text, e.label) for e in
                                                              synthetic_examples(LABELS, 50, seed=2)])
            wait_for(lambda: client.get("/v1/status").json()["training"]["drift"]["label_mix"]["samples"] >= 140,
                     what="the stable mix read")
            assert client.get("/v1/status").json()["training"]["drift"]["label_mix"]["state"] == "stable"
            assert [r["trigger"] for r in _runs(client)] == ["manual"]

            # A label production does not know arrives in bulk: the mix has changed.
            produce(broker.bootstrap_servers, topic, [record(e.text, e.label) for e in
                                                      synthetic_examples(["u0"], 150, seed=3)])
            wait_for(lambda: any(r["trigger"] == "drift" for r in _runs(client)), what="a drift retrain")
            drifted = [r for r in _runs(client) if r["trigger"] == "drift"]
            assert len(drifted) == 1 and drifted[0]["requested_by"] == "drift:label_mix", drifted
            assert daemon.metrics.registry.get_sample_value("lifelong_drift_detected_total",
                                                            {"detector": "label_mix"}) == 1
    finally:
        daemon.stop()


def test_served_texts_from_another_domain_fire_the_embedding_detector_once(
        broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path) -> None:
    # The mean-shift detectors are held back (min_samples out of reach): only the embeddings speak.
    settings = settings_for(broker, topic, sqlite_url, tmp_path, api={"port": 0, "token": TOKEN}, training={
        "base_model": str(tiny_bert),
        "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16, "max_length": 24},
        "buffer": {"size": 30}}, drift={"enabled": True, "check_s": CHECK_S, "min_samples": 1_000_000,
                                        "embedding_window": 60})
    daemon = Daemon(settings).start()
    try:
        with httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as client:
            sent = produce(broker.bootstrap_servers, topic, [record(e.text, e.label) for e in
                                                             synthetic_examples(LABELS, 60, seed=1)])
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == sent, what="training data")
            assert wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])["outcome"] == "promoted"

            stable = [e.text for e in synthetic_examples(LABELS, 60, seed=2)]
            for start in range(0, len(stable), 30):
                client.post("/v1/predict", json={"texts": stable[start:start + 30]})
                time.sleep(CHECK_S)
            time.sleep(3 * CHECK_S)
            embedding = client.get("/v1/status").json()["training"]["drift"]["embedding"]
            assert embedding["state"] == "stable" and embedding["p_value"] is not None, embedding
            assert embedding["reference"] >= 2
            assert [r["trigger"] for r in _runs(client)] == ["manual"]

            shifted = _out_of_scope(300, seed=3)
            for start in range(0, len(shifted), 30):
                client.post("/v1/predict", json={"texts": shifted[start:start + 30]})
                time.sleep(CHECK_S)
                if any(r["trigger"] == "drift" for r in _runs(client)):
                    break
            drifted = [r for r in _runs(client) if r["trigger"] == "drift"]
            assert len(drifted) == 1 and drifted[0]["requested_by"] == "drift:embedding", _runs(client)
            assert daemon.metrics.registry.get_sample_value("lifelong_drift_detected_total",
                                                            {"detector": "embedding"}) == 1
    finally:
        daemon.stop()
