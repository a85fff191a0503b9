"""What a rejected decision tells the operator, and which labels the next retrain replays."""

from __future__ import annotations

import doctest

import daemon.training.rejection
from daemon.training.gate import Check, Decision
from daemon.training.rejection import advice, regressed_labels


def _rejected(*failed: str) -> Decision:
    checks = tuple(Check(name, False, 0.5, 0.25, f"{name} failed") for name in failed)
    checks += (Check("eval_samples", True, 40.0, 1.0, "ok"),)
    return Decision(promote=False, checks=checks, summary="reject: ...")


def test_module_examples() -> None:
    assert doctest.testmod(daemon.training.rejection).failed == 0


def test_regressed_labels_are_the_failed_per_label_checks_only() -> None:
    checks = [{"name": "label_forgetting:b", "passed": False}, {"name": "label_forgetting:a", "passed": False},
              {"name": "label_forgetting:c", "passed": True}, {"name": "old_label_forgetting", "passed": False}]
    assert regressed_labels(checks) == ["a", "b"]


def test_advice_names_many_new_labels_briefly_and_ends_with_the_override() -> None:
    text = advice(_rejected("primary_improvement"), version="v0009", new_labels=[f"l{i}" for i in range(8)])
    assert text.startswith("The new labels l0, l1, l2, l3, l4 and 3 more stay unserved until a candidate passes.")
    assert "more samples of the new labels" in text
    assert text.endswith('lifelong models promote v0009 --reason "...".')


def test_advice_for_flips_points_at_the_data_first() -> None:
    text = advice(_rejected("negative_flip_rate"), version="v0002", new_labels=[])
    assert "check the new records for wrong labels" in text and "stay unserved" not in text


def test_advice_without_replay_does_not_promise_a_replay() -> None:
    text = advice(_rejected("label_forgetting:billing"), version="v0003", new_labels=["x"], replays=False)
    assert "The next retrain replays" not in text
    assert "billing got worse and this strategy does not replay" in text
    text = advice(_rejected("old_label_forgetting"), version="v0003", new_labels=["x"], replays=True)
    assert "replays the stored training samples of every old label" in text
