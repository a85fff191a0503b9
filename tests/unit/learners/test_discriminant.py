"""Strategy ``slda``: exact class-incremental LDA statistics over a frozen encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from learners.buffer import BufferConfig
from learners.config import StrategyConfig
from learners.discriminant import DiscriminantStats, has_statistics, oas_shrinkage
from learners.errors import ModelLoadError
from learners.inference import predict
from learners.model import CLASSIFIER_FILE, load_classifier
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

    def test_artifacts_hold_the_gram_triangle_and_the_older_full_form_still_loads(self) -> None:
        x, y = _features(4, 40, 3)
        stats = DiscriminantStats.empty(3, 8)
        stats.update(x, y)
        saved = stats.to_tensors()
        assert "slda.gram" not in saved and saved["slda.gram_upper"].shape == (8 * 9 // 2,)
        assert has_statistics(saved)
        again = DiscriminantStats.from_tensors(saved, labels=3, hidden=8)
        assert again is not None and torch.equal(again.gram, stats.gram)
        older = {"slda.sums": stats.sums, "slda.counts": stats.counts, "slda.gram": stats.gram}
        assert has_statistics(older) and not has_statistics({"slda.sums": stats.sums, "slda.counts": stats.counts})
        from_older = DiscriminantStats.from_tensors(older, labels=3, hidden=8)
        assert from_older is not None
        assert all(torch.equal(a, b) for a, b in zip(from_older.head(1e-3), stats.head(1e-3), strict=True))

    def test_saved_statistics_of_another_width_are_refused(self) -> None:
        stats = DiscriminantStats.empty(3, 8)
        with pytest.raises(ValueError, match=r"^saved LDA statistics do not fit a 3-label head over 16 features"):
            DiscriminantStats.from_tensors(stats.to_tensors(), labels=3, hidden=16)

    def test_update_with_mismatched_targets_raises(self) -> None:
        with pytest.raises(ValueError, match=r"^2 feature rows for 1 targets$"):
            DiscriminantStats.empty(2, 8).update(torch.zeros(2, 8), [0])


class TestOasShrinkage:
    def test_matches_scikit_learn(self) -> None:
        from sklearn.covariance import OAS, empirical_covariance

        for n, d in ((40, 8), (30, 60), (500, 20)):
            x = torch.randn(n, d, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
            covariance = torch.from_numpy(empirical_covariance(x.numpy()))
            assert oas_shrinkage(covariance, n) == pytest.approx(OAS().fit(x.numpy()).shrinkage_, rel=1e-9)

    def test_shrinks_more_when_samples_are_few_for_the_width(self) -> None:
        scales = torch.linspace(0.2, 3.0, 30, dtype=torch.float64)  # anisotropic: identity is not the truth
        generator = torch.Generator().manual_seed(4)

        def stats(n: int) -> tuple[DiscriminantStats, torch.Tensor]:
            x = torch.randn(n, 30, generator=generator, dtype=torch.float64) * scales
            y = [i % 3 for i in range(n)]
            s = DiscriminantStats.empty(3, 30)
            s.update(x + torch.tensor(y, dtype=torch.float64)[:, None], y)
            means = s.sums / s.counts[:, None]
            return s, (s.gram - s.sums.T @ means) / (n - 3)

        (few, few_cov), (_, many_cov) = stats(24), stats(3000)
        assert oas_shrinkage(few_cov, 21) > 10 * oas_shrinkage(many_cov, 2997)
        # 'auto' (None) is the head at the OAS shrinkage.
        for ours, theirs in zip(few.head(None), few.head(oas_shrinkage(few_cov, 21)), strict=True):
            assert torch.allclose(ours.double(), theirs.double())


class TestStrategySettings:
    def test_shrinkage_is_auto_or_a_fraction(self) -> None:
        assert StrategyConfig().slda_fixed_shrinkage is None
        assert StrategyConfig(slda_shrinkage=0.2).slda_fixed_shrinkage == 0.2
        with pytest.raises(ValueError, match=r"slda_shrinkage must be 'auto' or a number in \(0, 1\), got 1.5"):
            StrategyConfig(slda_shrinkage=1.5)
        with pytest.raises(ValueError, match="slda_shrinkage"):
            StrategyConfig(slda_shrinkage="sometimes")
        with pytest.raises(ValueError, match="slda_random_features"):
            StrategyConfig(slda_random_features=-1)


def _slda(tmp_path: Path, tiny_bert: Path, name: str, data, parent: Path | None = None, *, width: int = 0):
    config = StrategyConfig(name="slda", max_length=24, slda_random_features=width)
    spec = TrainingSpec(output_dir=tmp_path / name, train=data, strategy=config, buffer=BufferConfig(size=10),
                        parent_dir=parent, base_model=None if parent else tiny_bert)
    return train_candidate(spec)


class TestRandomFeatures:
    def test_staged_equals_joint_and_serving_reads_the_saved_map(self, tiny_bert: Path, tmp_path: Path) -> None:
        task1 = synthetic_examples(LABELS[:3], 20, seed=1)
        task2 = synthetic_examples(LABELS[3:], 20, seed=2, start_id=1000)
        v1 = _slda(tmp_path, tiny_bert, "v1", task1, width=64)
        v2 = _slda(tmp_path, tiny_bert, "v2", task2, Path(v1.output_dir), width=64)
        joint = _slda(tmp_path, tiny_bert, "joint", task1 + task2, width=64)
        m1, m2, mj = (load_classifier(Path(r.output_dir)) for r in (v1, v2, joint))
        assert json.loads((Path(v2.output_dir) / CLASSIFIER_FILE).read_text())["random_features"] == 64
        assert m1.model.projection is not None and m1.model.projection.shape == (m1.model.hidden_size, 64)
        assert m2.model.feature_size == 64 and m2.model.head.weight.shape == (6, 64)
        # A child reads the features its parent's statistics were summed in.
        assert torch.equal(m1.model.projection, m2.model.projection)
        assert torch.allclose(m2.model.head.weight, mj.model.head.weight, rtol=1e-4, atol=1e-5)
        state = load_file(str(Path(v2.output_dir) / STATE_TENSORS))
        assert state["slda.gram_upper"].shape == (64 * 65 // 2,)
        # Served logits are the head over relu(pooled @ R), the map loaded from the artifact.
        texts = [e.text for e in synthetic_examples(LABELS, 3, seed=9, start_id=5000)]
        served = predict(m2, texts, embeddings=True)
        pooled = torch.tensor(served.embeddings)
        by_hand = torch.relu(pooled @ m2.model.projection) @ m2.model.head.weight.T + m2.model.head.bias
        assert torch.allclose(torch.tensor(served.logits), by_hand, atol=1e-4)

    def test_a_lineage_keeps_the_map_it_started_with(self, tiny_bert: Path, tmp_path: Path) -> None:
        v1 = _slda(tmp_path, tiny_bert, "v1", synthetic_examples(LABELS[:3], 10, seed=1), width=0)
        v2 = _slda(tmp_path, tiny_bert, "v2", synthetic_examples(LABELS[3:], 10, seed=2, start_id=1000),
                   Path(v1.output_dir), width=64)
        model = load_classifier(Path(v2.output_dir)).model
        assert model.projection is None and model.feature_size == model.hidden_size

    def test_weights_and_settings_that_disagree_are_refused(self, tiny_bert: Path, tmp_path: Path) -> None:
        v1 = _slda(tmp_path, tiny_bert, "v1", synthetic_examples(LABELS[:3], 10, seed=1), width=32)
        settings_file = Path(v1.output_dir) / CLASSIFIER_FILE
        settings = json.loads(settings_file.read_text())
        settings_file.write_text(json.dumps({**settings, "random_features": 0}))
        with pytest.raises(ModelLoadError, match=r"names 0 random features but the weights hold \(32, 32\)"):
            load_classifier(Path(v1.output_dir))


class TestSldaTraining:
    def test_second_run_equals_one_joint_run_and_keeps_the_encoder(self, tiny_bert: Path, tmp_path: Path) -> None:
        # On the pooled features (the random map has its own tests above): the toy encoder's
        # pooled space is where the accuracy floor below was set.
        config = StrategyConfig(name="slda", max_length=24, slda_random_features=0, slda_shrinkage=1e-3)
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

