"""``training.adapter: lora`` through the real lifecycle: ingest, worker, evaluation, gate, registry, serving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session

from daemon.config import ConfigError, Settings
from daemon.ingest.broker import EmbeddedBroker
from daemon.training.lifecycle import Lifecycle
from learners.lora import ADAPTER_JSON, ADAPTER_WEIGHTS, base_fingerprint
from learners.model import WEIGHTS_FILE
from storage import registry
from storage.artifacts import MANIFEST_FILE
from tests.conftest import settings_for
from tests.integration.test_lifecycle import _ingest, _lifecycle
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2", "c3", "c4", "c5"]
STAGE1, STAGE2 = LABELS[:3], LABELS[3:]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


def _settings(broker: EmbeddedBroker, topic: str, url: str, tmp_path: Path, tiny_bert: Path) -> Settings:
    return settings_for(broker, topic, url, tmp_path, training={
        "base_model": str(tiny_bert),
        "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 15, "batch_size": 16, "max_length": 24},
        # The tiny BERT's keyword embeddings are random and frozen: it learns only with an adapter on them too.
        "adapter": {"name": "lora", "r": 4, "alpha": 8, "learning_rate": 0.03,
                    "target_modules": ["word_embeddings", "query", "value"]},
        "buffer": {"size": 60},
    })


def _accuracy(lifecycle: Lifecycle, labels: list[str]) -> float:
    probe = synthetic_examples(labels, 30, seed=11)
    got = lifecycle.predictor.predict([e.text for e in probe]).top_labels
    return sum(g == e.label for g, e in zip(got, probe, strict=True)) / len(probe)


class TestLoraLifecycle:
    def test_a_lora_run_trains_publishes_serves_and_continues_from_its_parent(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path
    ) -> None:
        settings = _settings(broker, topic, sqlite_url, tmp_path, tiny_bert)
        count = _ingest(broker, topic, settings, synthetic_examples(STAGE1, 50, seed=1), already=0)
        lifecycle = _lifecycle(settings)
        first = lifecycle.run_cycle(trigger="manual")
        assert (first.status, first.outcome, lifecycle.predictor.version) == ("succeeded", "promoted", "v0001")
        train_step = next(step for step in first.steps if step["step"] == "train")
        assert train_step["adapter"] == "lora" and train_step["trainable_parameters"] > 0

        v1 = lifecycle.store.path_for("v0001")
        manifest = lifecycle.store.verify("v0001")  # checksums cover the adapter files
        assert {ADAPTER_WEIGHTS, ADAPTER_JSON} <= set(manifest.files) and WEIGHTS_FILE not in manifest.files
        base = {"path": str(tiny_bert), "sha256": base_fingerprint(tiny_bert)}
        assert manifest.lineage["adapter"]["base_model"] == base
        assert json.loads((v1 / ADAPTER_JSON).read_text())["base_model"] == base
        assert train_step["artifact_bytes"] == sum(
            (v1 / name).stat().st_size for name in manifest.files)
        assert _accuracy(lifecycle, STAGE1) >= 0.6

        _ingest(broker, topic, settings, synthetic_examples(STAGE2, 50, seed=2), already=count)
        second = lifecycle.run_cycle(trigger="manual")
        assert (second.status, second.outcome, lifecycle.predictor.version) == ("succeeded", "promoted", "v0002"), [
            step for step in second.steps if step["step"] == "gate"]
        with Session(lifecycle.engine) as session:
            v2 = registry.get_version(session, "v0002")
        assert v2 is not None and (v2.parent, v2.generation, v2.labels) == ("v0001", 2, LABELS)
        assert lifecycle.store.read_manifest("v0002").lineage["adapter"]["base_model"] == base
        assert not (lifecycle.store.path_for("v0002") / WEIGHTS_FILE).exists()
        assert (lifecycle.store.path_for("v0002") / MANIFEST_FILE).is_file()
        assert _accuracy(lifecycle, STAGE1) >= 0.5  # replay keeps the parent's labels
        assert _accuracy(lifecycle, STAGE2) >= 0.6

    def test_lora_with_the_slda_default_is_a_config_error(self, broker: EmbeddedBroker, topic: str,
                                                          sqlite_url: str, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="training.adapter 'lora' cannot be used with "
                                              "training.strategy.name 'slda'"):
            settings_for(broker, topic, sqlite_url, tmp_path, training={"adapter": "lora"})
