"""A saved classifier's head after a rename, merge or retire: other rows untouched, state consistent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learners.buffer import BufferConfig, ReplayBuffer
from learners.config import StrategyConfig
from learners.data import Example
from learners.inference import predict
from learners.model import load_classifier
from learners.relabel import relabel_classifier
from learners.train import TrainingSpec, load_parent_state, train_candidate
from tests.tiny_model import synthetic_examples
from tests.unit.learners.conftest import LABELS


def _train(tmp_path: Path, tiny_bert: Path, name: str, train: list[Example]) -> Path:
    spec = TrainingSpec(output_dir=tmp_path / name, train=train, base_model=tiny_bert, buffer=BufferConfig(size=60),
                        strategy=StrategyConfig(name=name, learning_rate=3e-3, epochs=3, batch_size=16,
                                                max_length=24))
    train_candidate(spec)
    return tmp_path / name


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return synthetic_examples(LABELS[:4], 30, seed=3)


@pytest.fixture(scope="module")
def slda_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path, examples: list[Example]) -> Path:
    return _train(tmp_path_factory.mktemp("slda"), tiny_bert, "slda", examples)


@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path, examples: list[Example]) -> Path:
    return _train(tmp_path_factory.mktemp("replay"), tiny_bert, "replay", examples)


def _answers(directory: Path, texts: list[str]) -> list[str]:
    return predict(load_classifier(directory), texts).predicted_labels


@pytest.mark.parametrize("learner", ["slda", "replay"])
def test_rename_keeps_every_row_and_answer(learner: str, request: pytest.FixtureRequest, tmp_path: Path,
                                           examples: list[Example]) -> None:
    source = request.getfixturevalue(f"{learner}_dir")
    result = relabel_classifier(source, tmp_path / "out", {"c0": "zero"})
    assert result.labels == ["zero", "c1", "c2", "c3"]
    before, after = load_classifier(source).model, load_classifier(tmp_path / "out").model
    assert torch.equal(before.head.weight, after.head.weight) and torch.equal(before.head.bias, after.head.bias)
    texts = [e.text for e in examples]
    assert _answers(tmp_path / "out", texts) == [{"c0": "zero"}.get(a, a) for a in _answers(source, texts)]


@pytest.mark.parametrize("learner", ["slda", "replay"])
def test_retire_drops_the_row_and_leaves_the_other_answers(learner: str, request: pytest.FixtureRequest,
                                                           tmp_path: Path, examples: list[Example]) -> None:
    source = request.getfixturevalue(f"{learner}_dir")
    result = relabel_classifier(source, tmp_path / "out", {"c1": None})
    assert result.labels == ["c0", "c2", "c3"]
    texts = [e.text for e in examples]
    before, after = _answers(source, texts), _answers(tmp_path / "out", texts)
    assert "c1" not in after
    assert all(a == b for a, b in zip(after, before, strict=True) if b != "c1")
    # The buffer lost c1's samples and knows the new rows.
    buffer = ReplayBuffer.from_state(result.buffer_state)
    assert set(buffer.per_label()) == {0, 1, 2}
    assert sorted(m.sample_id for m in buffer.members) == sorted(result.buffer_members)


def test_a_slda_merge_is_the_lda_of_the_merged_class(slda_dir: Path, tmp_path: Path, tiny_bert: Path,
                                                      examples: list[Example]) -> None:
    result = relabel_classifier(slda_dir, tmp_path / "out", {"c1": "c12", "c2": "c12"})
    assert result.labels == ["c0", "c12", "c3"]
    merged = [Example(e.sample_id, e.text, "c12" if e.label in ("c1", "c2") else e.label) for e in examples]
    joint = _train(tmp_path, tiny_bert, "slda", merged)
    ours, theirs = load_classifier(tmp_path / "out").model, load_classifier(joint).model
    order = [theirs.labels.index(label) for label in ours.labels]
    assert torch.allclose(ours.head.weight, theirs.head.weight[order], atol=1e-4)
    assert torch.allclose(ours.head.bias, theirs.head.bias[order], atol=1e-4)
    state = load_parent_state(tmp_path / "out").state.tensors
    assert state["slda.counts"].tolist() == [30.0, 60.0, 30.0]


def test_a_fine_tuned_merge_keeps_the_target_row_and_the_others(replay_dir: Path, tmp_path: Path,
                                                               examples: list[Example]) -> None:
    relabel_classifier(replay_dir, tmp_path / "out", {"c1": "c2"})
    before, after = load_classifier(replay_dir).model, load_classifier(tmp_path / "out").model
    assert after.labels == ["c0", "c2", "c3"]
    keep = [0, 2, 3]
    assert torch.equal(after.head.weight, before.head.weight[keep])
    texts = [e.text for e in examples if e.label not in ("c1", "c2")]
    assert _answers(tmp_path / "out", texts) == _answers(replay_dir, texts)


def test_a_change_that_leaves_no_label_is_refused(slda_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no label"):
        relabel_classifier(slda_dir, tmp_path / "out", {label: None for label in LABELS[:4]})
