"""Strategy ``slda``: exact class-incremental LDA statistics over a frozen encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from learners.buffer import BufferConfig
from learners.config import StrategyConfig
from learners.discriminant import DiscriminantStats
from learners.inference import predict
from learners.model import load_classifier
from learners.train import STATE_TENSORS, TrainingSpec, train_candidate
from tests.tiny_model import synthetic_examples
from tests.unit.learners.conftest import LABELS


def _features(seed: int, n: int, labels: int, hidden: int = 8) -> tuple[torch.Tensor, list[int]]:
    generator = torch.Generator().manual_seed(seed)
    targets = [i % labels for i in range(n)]
    centres = torch.randn(labels, hidden, generator=generator, dtype=torch.float64) * 3
    return centres[targets] + torch.randn(n, hidden, generator=generator, dtype=torch.float64), targets


class TestDiscriminantStats:
    def test_head_is_independent_of_arrival_order_and_of_growth(self) -> None:
        x, y = _features(0, 120, 4)
        joint = DiscriminantStats.empty(4, 8)
        joint.update(x, y)
        staged = DiscriminantStats.empty(2, 8)
        first = [i for i, t in enumerate(y) if t < 2]
        second = [i for i, t in enumerate(y) if t >= 2][::-1]
        staged.update(x[first], [y[i] for i in first])
        staged.grow(4)
        staged.update(x[second], [y[i] for i in second])
        for ours, theirs in zip(staged.head(1e-3), joint.head(1e-3), strict=True):
            assert torch.allclose(ours.double(), theirs.double(), atol=1e-9)

    def test_head_classifies_separated_clusters(self) -> None:
        x, y = _features(1, 200, 5)
        stats = DiscriminantStats.empty(5, 8)
        stats.update(x, y)
        weight, bias, fitted = stats.head(1e-3)
        assert fitted.all()
        assert ((x @ weight.T + bias).argmax(dim=1) == torch.tensor(y)).double().mean() > 0.95

    def test_rows_without_data_are_not_fitted(self) -> None:
        x, y = _features(2, 30, 3)
        stats = DiscriminantStats.empty(4, 8)
        stats.update(x, y)
        assert stats.head(1e-3)[2].tolist() == [True, True, True, False]

    def test_round_trip_through_tensors_grows_rows(self) -> None:
        x, y = _features(3, 30, 3)
        stats = DiscriminantStats.empty(3, 8)
        stats.update(x, y)
        again = DiscriminantStats.from_tensors(stats.to_tensors(), labels=5, hidden=8)
        assert again is not None and again.sums.shape == (5, 8)
        assert torch.equal(again.sums[:3], stats.sums) and torch.equal(again.gram, stats.gram)
        assert DiscriminantStats.from_tensors({}, labels=5, hidden=8) is None

    def test_saved_statistics_of_another_width_are_refused(self) -> None:
        stats = DiscriminantStats.empty(3, 8)
        with pytest.raises(ValueError, match=r"^saved LDA statistics do not fit a 3-label head over 16 features"):
            DiscriminantStats.from_tensors(stats.to_tensors(), labels=3, hidden=16)

    def test_update_with_mismatched_targets_raises(self) -> None:
        with pytest.raises(ValueError, match=r"^2 feature rows for 1 targets$"):
            DiscriminantStats.empty(2, 8).update(torch.zeros(2, 8), [0])


class TestSldaTraining:
    def test_second_run_equals_one_joint_run_and_keeps_the_encoder(self, tiny_bert: Path, tmp_path: Path) -> None:
        config = StrategyConfig(name="slda", max_length=24)
        task1 = synthetic_examples(LABELS[:3], 30, seed=1)
        task2 = synthetic_examples(LABELS[3:], 30, seed=2, start_id=1000)

        def train(name: str, data, parent=None):
            spec = TrainingSpec(output_dir=tmp_path / name, train=data, strategy=config, buffer=BufferConfig(size=10),
                                parent_dir=parent, base_model=None if parent else tiny_bert)
            return train_candidate(spec)

        v1 = train("v1", task1)
        v2 = train("v2", task2, parent=Path(v1.output_dir))
        joint = train("joint", task1 + task2)
        w2 = load_file(str(Path(v2.output_dir) / "model.safetensors"))
        wj = load_file(str(Path(joint.output_dir) / "model.safetensors"))
        w1 = load_file(str(Path(v1.output_dir) / "model.safetensors"))
        assert v2.labels == joint.labels == LABELS
        # Encoder untouched: every backbone weight equals the parent's.
        assert all(torch.equal(w1[k], w2[k]) for k in w1 if not k.startswith("head."))
        # Head from exact statistics: staged equals joint (up to float32 storage).
        assert torch.allclose(w2["head.weight"], wj["head.weight"], rtol=1e-4, atol=1e-5)
        state = load_file(str(Path(v2.output_dir) / STATE_TENSORS))
        assert state["slda.counts"].tolist() == [30.0] * 6
        test = synthetic_examples(LABELS, 20, seed=5, start_id=9000)
        got = predict(load_classifier(Path(v2.output_dir)), [e.text for e in test]).predicted_labels
        accuracy = sum(g == e.label for g, e in zip(got, test, strict=True)) / len(test)
        old = [e for e in test if e.label in LABELS[:3]]
        old_got = predict(load_classifier(Path(v2.output_dir)), [e.text for e in old]).predicted_labels
        assert sum(g == e.label for g, e in zip(old_got, old, strict=True)) / len(old) >= 0.6, accuracy

