"""Training runs through Avalanche: the conformance suite every strategy passes, and learning behaviour."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from learners.buffer import BufferConfig
from learners.config import STRATEGY_COMPONENTS, StrategyConfig
from learners.data import Example
from learners.inference import predict
from learners.model import load_classifier
from learners.train import STATE_TENSORS, TrainingSpec, load_parent_state, train_candidate
from tests.tiny_model import synthetic_examples
from tests.unit.learners.conftest import LABELS

TASK1, TASK2 = LABELS[:3], LABELS[3:]


def _config(name: str, **overrides) -> StrategyConfig:
    return StrategyConfig(name=name, learning_rate=3e-3, epochs=3, batch_size=16, replay_batch_size=16,
                          max_length=24, **overrides)


def _train(tmp_path: Path, tiny_bert: Path, name: str, version: str, train, *, parent=None, replay=(),
           config: StrategyConfig | None = None, **kw):
    spec = TrainingSpec(output_dir=tmp_path / version, train=train, replay=replay, strategy=config or _config(name),
                        buffer=BufferConfig(size=30), parent_dir=parent, base_model=None if parent else tiny_bert, **kw)
    return train_candidate(spec)


def _accuracy(directory: str, examples: list[Example]) -> float:
    got = predict(load_classifier(Path(directory)), [e.text for e in examples]).predicted_labels
    return sum(g == e.label for g, e in zip(got, examples, strict=True)) / len(examples)


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize("name", list(STRATEGY_COMPONENTS))
class TestStrategyConformance:
    """What every strategy must do, whatever it does to fight forgetting."""

    def test_inputs_are_left_unchanged(self, name: str, tiny_bert: Path, tmp_path: Path) -> None:
        first = synthetic_examples(TASK1, 20, seed=1)
        v1 = _train(tmp_path, tiny_bert, name, "v1", first)
        parent_files = _digest(Path(v1.output_dir))
        second = synthetic_examples(TASK2, 20, seed=2, start_id=100)
        replay = [e for e in first if e.sample_id in set(v1.buffer_members)]
        second_copy, replay_copy = list(second), list(replay)
        _train(tmp_path, tiny_bert, name, "v2", second, parent=Path(v1.output_dir), replay=replay)
        assert second == second_copy and replay == replay_copy
        assert _digest(Path(v1.output_dir)) == parent_files

    def test_checkpoint_round_trip_restores_model_and_state(self, name: str, tiny_bert: Path, tmp_path: Path) -> None:
        result = _train(tmp_path, tiny_bert, name, "v1", synthetic_examples(TASK1, 20, seed=1))
        out = Path(result.output_dir)
        parent = load_parent_state(out)
        assert parent.generation == result.generation == 1
        assert parent.buffer_state == result.buffer_state
        if (out / STATE_TENSORS).exists():
            saved = load_file(str(out / STATE_TENSORS))
            assert set(saved) == set(parent.state.tensors)
            assert all(torch.equal(saved[k], parent.state.tensors[k]) for k in saved)
        texts = [e.text for e in synthetic_examples(TASK1, 5, seed=9)]
        first, second = load_classifier(out), load_classifier(out)
        assert predict(first, texts).probabilities == predict(second, texts).probabilities

    def test_same_seed_trains_identical_weights(self, name: str, tiny_bert: Path, tmp_path: Path) -> None:
        data = synthetic_examples(TASK1, 20, seed=1)
        a = _train(tmp_path, tiny_bert, name, "a", data)
        b = _train(tmp_path, tiny_bert, name, "b", data)
        wa, wb = load_file(str(Path(a.output_dir) / "model.safetensors")), load_file(
            str(Path(b.output_dir) / "model.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert a.buffer_members == b.buffer_members


class TestClassIncrementalStream:
    """Two tasks of three new labels each: the replay strategies must remember task 1."""

    @pytest.fixture(scope="class")
    @classmethod
    def old_label_accuracy(cls, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
        task1 = synthetic_examples(TASK1, 60, seed=1)
        task2 = synthetic_examples(TASK2, 60, seed=2, start_id=1000)
        test1 = synthetic_examples(TASK1, 30, seed=3, start_id=5000)
        scores = {}
        for name in ("naive", "replay", "replay+lwf"):
            root = tmp_path_factory.mktemp(name.replace("+", "-"))
            v1 = _train(root, tiny_bert, name, "v1", task1)
            replay = [e for e in task1 if e.sample_id in set(v1.buffer_members)]
            v2 = _train(root, tiny_bert, name, "v2", task2, parent=Path(v1.output_dir), replay=replay)
            assert v2.new_labels == TASK2
            scores[name] = _accuracy(v2.output_dir, test1)
        return scores

    def test_replay_keeps_clearly_more_old_label_accuracy_than_naive(self, old_label_accuracy) -> None:
        assert old_label_accuracy["naive"] < 0.2
        assert old_label_accuracy["replay"] >= old_label_accuracy["naive"] + 0.5

    def test_replay_lwf_keeps_clearly_more_old_label_accuracy_than_naive(self, old_label_accuracy) -> None:
        assert old_label_accuracy["replay+lwf"] >= old_label_accuracy["naive"] + 0.5


class TestEwcState:
    def test_ewc_accumulates_importances_after_the_first_task(self, tiny_bert: Path, tmp_path: Path) -> None:
        v1 = _train(tmp_path, tiny_bert, "ewc", "v1", synthetic_examples(TASK1, 30, seed=1))
        first = load_parent_state(Path(v1.output_dir)).state.tensors
        importance = {k: v for k, v in first.items() if k.startswith("ewc.importance.")}
        assert importance and sum(float(v.abs().sum()) for v in importance.values()) > 0
        assert first["ewc.importance.head.weight"].shape == (3, 32)

        v2 = _train(tmp_path, tiny_bert, "ewc", "v2", synthetic_examples(TASK2, 30, seed=2, start_id=100),
                    parent=Path(v1.output_dir))
        second = load_parent_state(Path(v2.output_dir)).state.tensors
        # Online EWC: importances now cover the grown head and differ from the first task's.
        assert second["ewc.importance.head.weight"].shape == (6, 32)
        assert not torch.equal(second["ewc.importance.head.weight"][:3], first["ewc.importance.head.weight"])

    def test_the_saved_penalty_holds_a_child_trained_in_a_fresh_run_near_its_parent(
            self, tiny_bert: Path, tmp_path: Path) -> None:
        # Each retrain is a new process: the penalty only exists if the saved importances and
        # anchors come back and Avalanche's clock says an earlier experience happened.
        v1 = _train(tmp_path, tiny_bert, "ewc", "v1", synthetic_examples(TASK1, 30, seed=1))
        parent = load_file(str(Path(v1.output_dir) / "model.safetensors"))

        def moved(ewc_lambda: float) -> float:
            result = _train(tmp_path, tiny_bert, "ewc", f"child-{ewc_lambda:g}",
                            synthetic_examples(TASK2, 30, seed=2, start_id=100), parent=Path(v1.output_dir),
                            config=_config("ewc", ewc_lambda=ewc_lambda))
            child = load_file(str(Path(result.output_dir) / "model.safetensors"))
            return sum(float((child[k] - parent[k]).pow(2).sum()) for k in parent if not k.startswith("head."))

        assert moved(1e7) < 0.5 * moved(0.0)


class TestEdgeCases:
    def test_empty_training_data_is_skipped_and_writes_nothing(self, tiny_bert: Path, tmp_path: Path) -> None:
        result = _train(tmp_path, tiny_bert, "replay", "v1", [])
        assert result.status == "skipped"
        assert result.reason == "no new training examples"
        assert not (tmp_path / "v1").exists()

    def test_rare_label_is_trained_but_flagged(self, tiny_bert: Path, tmp_path: Path) -> None:
        data = synthetic_examples(["c0", "c1"], 20, seed=1) + synthetic_examples(["c2"], 2, seed=2, start_id=500)
        result = _train(tmp_path, tiny_bert, "naive", "v1", data)
        assert result.flagged_labels == {"c2": 2}
        assert "c2" in result.labels

    def test_unknown_strategy_lists_the_choices(self) -> None:
        with pytest.raises(ValueError, match="unknown strategy 'replay\\+magic'; choose one of: naive, replay"):
            StrategyConfig(name="replay+magic")

    def test_unknown_hyper_parameter_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="ewc_lamda"):
            StrategyConfig.model_validate({"name": "ewc", "ewc_lamda": 3})
