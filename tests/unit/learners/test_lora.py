"""LoRA adapters (``training.adapter: lora``): what is trained, what is stored, what loads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

import learners.train as train_module
from learners.buffer import BufferConfig
from learners.config import AdapterConfig, StrategyConfig
from learners.data import Example, encode_texts, pack_batch
from learners.errors import ModelLoadError
from learners.inference import predict
from learners.lora import ADAPTER_JSON, ADAPTER_WEIGHTS, base_fingerprint
from learners.model import WEIGHTS_FILE, load_classifier
from learners.train import STATE_TENSORS, TrainingSpec, train_candidate
from tests.tiny_model import build_tiny_bert, synthetic_examples
from tests.unit.learners.conftest import LABELS

TASK1, TASK2 = LABELS[:3], LABELS[3:]
#: The tiny BERT's keyword embeddings are random and frozen: it learns only with an adapter on them too.
LORA = AdapterConfig(name="lora", r=4, alpha=8, learning_rate=3e-2,
                     target_modules=("word_embeddings", "query", "value"))


def _config(name: str, epochs: int = 15) -> StrategyConfig:
    return StrategyConfig(name=name, learning_rate=3e-3, epochs=epochs, batch_size=16, replay_batch_size=16,
                          max_length=24)


def _train(tmp_path: Path, tiny_bert: Path, version: str, train, *, name: str = "replay", parent=None, replay=(),
           adapter: AdapterConfig = LORA, epochs: int = 15):
    spec = TrainingSpec(output_dir=tmp_path / version, train=train, replay=replay, strategy=_config(name, epochs),
                        buffer=BufferConfig(size=30), parent_dir=parent, base_model=tiny_bert, adapter=adapter)
    return train_candidate(spec)


def _accuracy(directory: Path, examples: list[Example]) -> float:
    got = predict(load_classifier(directory), [e.text for e in examples]).predicted_labels
    return sum(g == e.label for g, e in zip(got, examples, strict=True)) / len(examples)


def _logits(model: torch.nn.Module, tokenizer, texts: list[str]) -> torch.Tensor:
    ids = encode_texts(tokenizer, texts, max_length=24)
    with torch.no_grad():
        return model.eval()(pack_batch(ids, tokenizer.pad_token_id))


def _two_generations(tmp_path: Path, tiny_bert: Path, name: str = "replay"):
    first = synthetic_examples(TASK1, 20, seed=1)
    v1 = _train(tmp_path, tiny_bert, "v1", first, name=name)
    replay = [e for e in first if e.sample_id in set(v1.buffer_members)]
    v2 = _train(tmp_path, tiny_bert, "v2", synthetic_examples(TASK2, 20, seed=2, start_id=100), name=name,
                parent=Path(v1.output_dir), replay=replay)
    return v1, v2


class TestAdapterConfig:
    def test_short_form_is_a_name(self) -> None:
        assert AdapterConfig.model_validate("lora") == AdapterConfig(name="lora")
        assert AdapterConfig.model_validate("none").enabled is False

    def test_defaults_target_bert_attention(self) -> None:
        config = AdapterConfig(name="lora")
        assert (config.r, config.alpha, config.target_modules) == (8, 16.0, ("query", "value"))

    def test_target_modules_accept_a_comma_list(self) -> None:
        assert AdapterConfig(name="lora", target_modules="query, key,value").target_modules == (
            "query", "key", "value")

    @pytest.mark.parametrize(("value", "message"), [
        ({"name": "qlora"}, "unknown adapter 'qlora'; choose one of: none, lora"),
        ({"name": "lora", "r": 0}, "Input should be greater than or equal to 1"),
        ({"name": "lora", "dropout": 1.0}, "Input should be less than 1"),
        ({"name": "lora", "target_modules": []}, "at least 1 item"),
        ({"name": "lora", "target_modules": ["query", "query"]}, "target_modules lists a module twice"),
        ({"name": "lora", "target_modules": ["que ry"]}, "target module 'que ry' is not a module name"),
        ({"name": "lora", "rank": 4}, "Extra inputs are not permitted"),
    ])
    def test_bad_values_are_refused(self, value: dict, message: str) -> None:
        with pytest.raises(ValidationError, match=message):
            AdapterConfig.model_validate(value)

    def test_slda_with_lora_is_refused_naming_both_keys(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"training.adapter 'lora' cannot be used with "
                                             r"training.strategy.name 'slda'"):
            TrainingSpec(output_dir=tmp_path / "v1", train=[], strategy=StrategyConfig(name="slda"), adapter=LORA)

    def test_training_settings_refuse_slda_with_lora(self) -> None:
        from daemon.config import TrainingSettings

        with pytest.raises(ValidationError, match="training.adapter 'lora' cannot be used with "
                                                  "training.strategy.name 'slda'"):
            TrainingSettings(adapter="lora")
        settings = TrainingSettings(adapter="lora", strategy={"name": "replay"})
        assert settings.adapter.name == "lora"


class TestLoraTraining:
    def test_only_adapters_and_head_are_trained(self, tiny_bert: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        seen: dict[str, int] = {}
        real = train_module._start_adapter

        def spy(loaded, spec):
            out = real(loaded, spec)
            params = dict(loaded.model.named_parameters())
            trainable = [n for n, p in params.items() if p.requires_grad]
            seen["trainable"] = sum(params[n].numel() for n in trainable)
            seen["other"] = sum(1 for n in trainable if ".lora_" not in n and not n.startswith("head."))
            seen["total"] = sum(p.numel() for p in params.values())
            return out

        monkeypatch.setattr(train_module, "_start_adapter", spy)
        result = _train(tmp_path, tiny_bert, "v1", synthetic_examples(TASK1, 20, seed=1), epochs=1)
        # Rank 4: the 63-word embedding (A: 4x63, B: 32x4), 2 layers x (query, value) x (A: 4x32 +
        # B: 32x4), and the 3-row head grown after wrapping.
        assert seen["other"] == 0
        assert result.trainable_parameters == (4 * 63 + 32 * 4) + 2 * 2 * (4 * 32 + 32 * 4) + 3 * 32 + 3
        assert result.trainable_parameters < seen["total"] / 5

    def test_artifact_holds_adapter_and_head_only(self, tiny_bert: Path, tmp_path: Path) -> None:
        data = synthetic_examples(TASK1, 20, seed=1)
        lora = _train(tmp_path, tiny_bert, "lora", data, name="replay+ewc", epochs=1)
        full = _train(tmp_path, tiny_bert, "full", data, name="replay+ewc", adapter=AdapterConfig(), epochs=1)
        out = Path(lora.output_dir)
        assert not (out / WEIGHTS_FILE).exists() and not (out / "tokenizer_config.json").exists()
        weights = load_file(str(out / ADAPTER_WEIGHTS))
        assert {k for k in weights if ".lora_" not in k} == {"head.weight", "head.bias"}
        state = load_file(str(out / STATE_TENSORS))  # EWC state covers the trainable parameters only
        assert {k.split(".", 2)[2] for k in state} == set(weights)
        meta = json.loads((out / ADAPTER_JSON).read_text())
        assert meta["base_model"] == {"path": str(tiny_bert), "sha256": base_fingerprint(tiny_bert)}
        assert lora.adapter == meta and full.adapter is None
        assert lora.artifact_bytes == sum(p.stat().st_size for p in out.iterdir())
        assert lora.artifact_bytes * 5 < full.artifact_bytes

    def test_loading_reproduces_the_trained_logits(self, tiny_bert: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        texts = [e.text for e in synthetic_examples(LABELS, 4, seed=9)]
        captured: dict[str, torch.Tensor] = {}
        real_save = train_module.save_classifier

        def capture(loaded, directory):
            captured["logits"] = _logits(loaded.model, loaded.tokenizer, texts)
            real_save(loaded, directory)

        monkeypatch.setattr(train_module, "save_classifier", capture)
        _, v2 = _two_generations(tmp_path, tiny_bert)
        loaded = load_classifier(Path(v2.output_dir))
        assert torch.equal(_logits(loaded.model, loaded.tokenizer, texts), captured["logits"])
        live = load_classifier(Path(v2.output_dir), merge=False)  # the adapter unmerged: equal up to rounding
        assert torch.allclose(_logits(live.model, live.tokenizer, texts), captured["logits"], atol=1e-5)

    def test_child_continues_its_parent_adapter(self, tiny_bert: Path, tmp_path: Path) -> None:
        v1, v2 = _two_generations(tmp_path, tiny_bert)
        assert v2.generation == 2 and v2.labels == LABELS
        parent = load_file(str(Path(v1.output_dir) / ADAPTER_WEIGHTS))
        child = load_file(str(Path(v2.output_dir) / ADAPTER_WEIGHTS))
        lora_b = [k for k in parent if "lora_B" in k and ".pooler." not in k]  # mean pooling: no pooler
        assert all(not torch.equal(parent[k], child[k]) for k in lora_b)  # trained further, not restarted
        assert all(child[k].abs().sum() > 0 for k in lora_b)
        assert parent["head.weight"].shape[0] == 3 and child["head.weight"].shape[0] == 6
        old = synthetic_examples(TASK1, 10, seed=9)
        assert _accuracy(Path(v1.output_dir), old) >= 0.5
        assert _accuracy(Path(v2.output_dir), old) >= 0.8  # replay keeps the parent's labels
        assert _accuracy(Path(v2.output_dir), synthetic_examples(LABELS, 10, seed=9)) >= 0.8

    @pytest.mark.parametrize("name", ["naive", "replay", "ewc", "lwf", "replay+lwf", "replay+ewc", "si", "agem"])
    def test_strategies_train_with_lora(self, name: str, tiny_bert: Path, tmp_path: Path) -> None:
        first = synthetic_examples(TASK1, 12, seed=1)
        v1 = _train(tmp_path, tiny_bert, "v1", first, name=name, epochs=1)
        replay = [e for e in first if e.sample_id in set(v1.buffer_members)]
        v2 = _train(tmp_path, tiny_bert, "v2", synthetic_examples(TASK2, 12, seed=2, start_id=100), name=name,
                    parent=Path(v1.output_dir), replay=replay, epochs=1)
        out = Path(v2.output_dir)
        assert v2.status == "trained" and (out / ADAPTER_WEIGHTS).is_file() and not (out / WEIGHTS_FILE).exists()
        assert len(predict(load_classifier(out), ["w1 w2"]).predicted_labels) == 1

    def test_same_seed_trains_identical_adapters(self, tiny_bert: Path, tmp_path: Path) -> None:
        data = synthetic_examples(TASK1, 12, seed=1)
        a = load_file(str(Path(_train(tmp_path, tiny_bert, "a", data, epochs=1).output_dir) / ADAPTER_WEIGHTS))
        b = load_file(str(Path(_train(tmp_path, tiny_bert, "b", data, epochs=1).output_dir) / ADAPTER_WEIGHTS))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class TestLineageTransitions:
    def test_full_child_of_a_lora_parent_saves_all_weights(self, tiny_bert: Path, tmp_path: Path) -> None:
        v1 = _train(tmp_path, tiny_bert, "v1", synthetic_examples(TASK1, 12, seed=1), epochs=1)
        v2 = _train(tmp_path, tiny_bert, "v2", synthetic_examples(TASK2, 12, seed=2, start_id=100),
                    parent=Path(v1.output_dir), adapter=AdapterConfig(), name="replay+ewc", epochs=1)
        out = Path(v2.output_dir)
        assert (out / WEIGHTS_FILE).is_file() and not (out / ADAPTER_JSON).exists() and v2.adapter is None

    def test_lora_child_of_a_fully_tuned_parent_saves_all_weights(self, tiny_bert: Path, tmp_path: Path) -> None:
        v1 = _train(tmp_path, tiny_bert, "v1", synthetic_examples(TASK1, 12, seed=1), adapter=AdapterConfig(),
                    epochs=1)
        v2 = _train(tmp_path, tiny_bert, "v2", synthetic_examples(TASK2, 12, seed=2, start_id=100),
                    parent=Path(v1.output_dir), epochs=1)
        assert (Path(v2.output_dir) / WEIGHTS_FILE).is_file() and v2.adapter is None

    def test_lora_child_of_an_slda_parent_stores_an_adapter(self, tiny_bert: Path, tmp_path: Path) -> None:
        v1 = _train(tmp_path, tiny_bert, "v1", synthetic_examples(TASK1, 12, seed=1), name="slda",
                    adapter=AdapterConfig())
        v2 = _train(tmp_path, tiny_bert, "v2", synthetic_examples(TASK2, 12, seed=2, start_id=100),
                    parent=Path(v1.output_dir), epochs=1)
        assert v2.adapter is not None and not (Path(v2.output_dir) / WEIGHTS_FILE).exists()
        # The slda parent's random feature map travels in the adapter artifact, unchanged.
        parent, child = load_classifier(Path(v1.output_dir)).model, load_classifier(Path(v2.output_dir)).model
        assert parent.projection is not None and child.projection is not None
        assert torch.equal(parent.projection, child.projection)

    def test_changing_the_adapter_shape_mid_lineage_fails_clearly(self, tiny_bert: Path, tmp_path: Path) -> None:
        v1 = _train(tmp_path, tiny_bert, "v1", synthetic_examples(TASK1, 12, seed=1), epochs=1)
        with pytest.raises(ModelLoadError, match=r"the parent's LoRA adapter has r=4, alpha=8.0, target_modules="
                                                 r"\['word_embeddings', 'query', 'value'\] but "
                                                 r"training.adapter asks for r=8"):
            _train(tmp_path, tiny_bert, "v2", synthetic_examples(TASK2, 12, seed=2, start_id=100),
                   parent=Path(v1.output_dir), adapter=AdapterConfig(name="lora", r=8, alpha=8), epochs=1)

    def test_unknown_target_module_fails_clearly(self, tiny_bert: Path, tmp_path: Path) -> None:
        with pytest.raises(ModelLoadError, match=r"training.adapter.target_modules \['q_proj'\] do not fit"):
            _train(tmp_path, tiny_bert, "v1", synthetic_examples(TASK1, 12, seed=1), epochs=1,
                   adapter=AdapterConfig(name="lora", target_modules=("q_proj",)))


class TestLoadingLora:
    def test_a_changed_base_model_is_refused(self, tiny_bert: Path, tmp_path: Path) -> None:
        base = build_tiny_bert(tmp_path / "base", LABELS)
        out = Path(_train(tmp_path, base, "v1", synthetic_examples(TASK1, 12, seed=1), epochs=1).output_dir)
        build_tiny_bert(base, LABELS, seed=1)  # same place, other weights
        with pytest.raises(ModelLoadError, match="the base model this adapter was trained on"):
            load_classifier(out)

    def test_a_moved_base_model_is_found_by_fingerprint(self, tiny_bert: Path, tmp_path: Path) -> None:
        base = build_tiny_bert(tmp_path / "base", LABELS)
        out = Path(_train(tmp_path, base, "v1", synthetic_examples(TASK1, 12, seed=1), epochs=1).output_dir)
        texts = ["w1 c0k0", "w3 c2k1"]
        before = predict(load_classifier(out), texts).probabilities
        base.rename(tmp_path / "moved")
        with pytest.raises(ModelLoadError, match="is not available"):
            load_classifier(out)
        assert predict(load_classifier(out, base_model=tmp_path / "moved"), texts).probabilities == before

    def test_relabel_keeps_the_adapter(self, tiny_bert: Path, tmp_path: Path) -> None:
        from learners.relabel import relabel_classifier

        out = Path(_train(tmp_path, tiny_bert, "v1", synthetic_examples(TASK1, 12, seed=1), epochs=1).output_dir)
        relabel_classifier(out, tmp_path / "v2", {"c0": "zero"})
        assert (tmp_path / "v2" / ADAPTER_JSON).is_file()
        assert load_classifier(tmp_path / "v2").model.labels == ["zero", "c1", "c2"]
