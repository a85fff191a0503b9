"""Class-incremental scores, checked against hand-computed values."""

from __future__ import annotations

import pytest

from benchmarks.datasets import Stage
from benchmarks.scoring import average_incremental, forgetting, score_stage, seen_test

STAGES = [Stage(1, ["a", "b"]), Stage(2, ["c"])]
TEST = [("t1", "a"), ("t2", "a"), ("t3", "b"), ("t4", "c"), ("t5", "c"), ("t6", "d")]


def test_seen_test_keeps_only_the_labels_of_the_stages_so_far() -> None:
    assert seen_test(TEST, STAGES, 1) == TEST[:3]
    assert seen_test(TEST, STAGES, 2) == TEST[:5]


def test_score_stage_accuracy_groups_and_new_label_recall() -> None:
    scored = seen_test(TEST, STAGES, 2)
    score = score_stage(scored, ["a", "c", "b", "c", "a"], STAGES, 2)
    assert score.accuracy == pytest.approx(3 / 5)
    assert score.groups == pytest.approx([2 / 3, 1 / 2])
    assert score.new_labels_recall == pytest.approx(1 / 2)
    assert score.unserved_labels == [] and score.texts == 5
    assert score_stage(scored, ["a", "a", "b", "a", "a"], STAGES, 2).unserved_labels == ["c"]


def test_score_stage_refuses_mismatched_predictions() -> None:
    with pytest.raises(ValueError, match="2 predictions for 3 test texts"):
        score_stage(TEST[:3], ["a", "b"], STAGES, 1)


def test_forgetting_is_the_mean_drop_from_each_groups_best_so_far() -> None:
    groups = [[0.9], [0.8, 1.0], [0.85, 0.6, 0.9]]
    assert forgetting(groups) == pytest.approx([None, 0.1, ((0.9 - 0.85) + (1.0 - 0.6)) / 2])
    assert average_incremental([0.9, 0.8]) == pytest.approx(0.85)
