from __future__ import annotations

import doctest
import json
import re

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

import learners.evaluate
from learners.evaluate import (
    EvaluationReport,
    accuracy,
    confusion_counts,
    evaluate,
    forgetting,
    label_drops,
    macro_f1,
    negative_flip_rate,
    per_label_f1,
)

# A small case worked by hand:
#   label 0: tp=1 fp=0 fn=1 -> 2/3     label 1: tp=2 fp=1 fn=0 -> 4/5     label 2: tp=1 fp=0 fn=0 -> 1
Y_TRUE = [0, 0, 1, 1, 2]
Y_PRED = [0, 1, 1, 1, 2]


def _random_case(seed: int, n: int, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_labels, size=n)
    # Mostly right, so F1 values spread over (0, 1) rather than sit near chance.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, n_labels + 2, size=n))
    return y_true, y_pred


def _message(text: str) -> str:
    return "^" + re.escape(text) + "$"


class TestModule:
    def test_module_doctest_passes(self) -> None:
        result = doctest.testmod(learners.evaluate)
        assert result.attempted > 0
        assert result.failed == 0


class TestAccuracy:
    def test_accuracy_counts_exact_matches(self) -> None:
        assert accuracy(Y_TRUE, Y_PRED) == 0.8

    def test_accuracy_accepts_numpy_arrays_of_any_int_width(self) -> None:
        assert accuracy(np.array([3, 4], dtype=np.uint8), np.array([3, 5], dtype=np.int32)) == 0.5

    def test_accuracy_returns_a_python_float(self) -> None:
        assert type(accuracy(np.array([1]), np.array([1]))) is float

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_accuracy_agrees_with_sklearn(self, seed: int) -> None:
        y_true, y_pred = _random_case(seed, n=500, n_labels=7)
        assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred))

    def test_accuracy_rejects_mismatched_lengths(self) -> None:
        with pytest.raises(ValueError, match=_message("y_true and y_pred have different lengths: 3 != 2")):
            accuracy([0, 1, 2], [0, 1])

    def test_accuracy_rejects_empty_input(self) -> None:
        with pytest.raises(ValueError, match=_message("cannot evaluate an empty set")):
            accuracy([], [])

    def test_accuracy_rejects_negative_ids(self) -> None:
        with pytest.raises(ValueError, match=_message("y_pred holds a negative label id: -3")):
            accuracy([0, 1], [0, -3])

    def test_accuracy_rejects_non_integer_ids(self) -> None:
        with pytest.raises(TypeError, match=_message("y_true must hold integer label ids, got dtype float64")):
            accuracy([0.0, 1.0], [0, 1])

    def test_accuracy_rejects_booleans(self) -> None:
        with pytest.raises(TypeError, match=_message("y_pred must hold integer label ids, got dtype bool")):
            accuracy([0, 1], [False, True])

    def test_accuracy_rejects_two_dimensional_input(self) -> None:
        with pytest.raises(ValueError, match=_message("y_true must be one-dimensional, got shape (1, 2)")):
            accuracy([[0, 1]], [0, 1])

    def test_accuracy_rejects_a_scalar(self) -> None:
        with pytest.raises(ValueError, match=_message("y_pred must be one-dimensional, got shape ()")):
            accuracy([0], 0)


class TestPerLabelF1:
    def test_per_label_f1_exact_on_hand_case(self) -> None:
        assert per_label_f1(Y_TRUE, Y_PRED) == pytest.approx({0: 2 / 3, 1: 4 / 5, 2: 1.0})

    def test_per_label_f1_default_labels_are_sorted_ids_in_y_true(self) -> None:
        # Label 9 is only predicted, so it is not scored by default.
        assert list(per_label_f1([5, 2, 5], [9, 2, 5])) == [2, 5]

    def test_per_label_f1_keeps_the_order_of_given_labels(self) -> None:
        assert list(per_label_f1(Y_TRUE, Y_PRED, labels=[2, 0, 1])) == [2, 0, 1]

    def test_per_label_f1_true_label_never_predicted_scores_zero(self) -> None:
        assert per_label_f1([0, 1, 1], [0, 0, 0]) == pytest.approx({0: 0.5, 1: 0.0})

    def test_per_label_f1_predicted_label_never_true_scores_zero(self) -> None:
        assert per_label_f1([0, 0], [0, 3], labels=[0, 3]) == pytest.approx({0: 2 / 3, 3: 0.0})

    def test_per_label_f1_label_absent_from_both_scores_zero(self) -> None:
        assert per_label_f1([0, 1], [0, 1], labels=[0, 1, 7]) == {0: 1.0, 1: 1.0, 7: 0.0}

    def test_per_label_f1_handles_large_ids(self) -> None:
        assert per_label_f1([10**12, 3], [10**12, 4]) == {3: 0.0, 10**12: 1.0}

    def test_per_label_f1_values_are_python_types(self) -> None:
        scores = per_label_f1(np.array([0, 1]), np.array([0, 1]))
        assert all(type(k) is int and type(v) is float for k, v in scores.items())

    @pytest.mark.parametrize("seed", [0, 1, 2, 3])
    def test_per_label_f1_agrees_with_sklearn(self, seed: int) -> None:
        y_true, y_pred = _random_case(seed, n=400, n_labels=6)
        labels = sorted(set(y_true.tolist()))
        expected = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
        assert list(per_label_f1(y_true, y_pred).values()) == pytest.approx(expected.tolist())

    @pytest.mark.parametrize("seed", [0, 1])
    def test_per_label_f1_agrees_with_sklearn_on_given_labels(self, seed: int) -> None:
        y_true, y_pred = _random_case(seed, n=300, n_labels=5)
        labels = [7, 0, 6, 3, 20]  # 6 only predicted, 20 nowhere
        expected = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
        assert list(per_label_f1(y_true, y_pred, labels=labels).values()) == pytest.approx(expected.tolist())

    def test_per_label_f1_rejects_empty_labels(self) -> None:
        with pytest.raises(ValueError, match=_message("labels must not be empty")):
            per_label_f1(Y_TRUE, Y_PRED, labels=[])

    def test_per_label_f1_rejects_duplicate_labels(self) -> None:
        with pytest.raises(ValueError, match=_message("labels holds a duplicate id: 1")):
            per_label_f1(Y_TRUE, Y_PRED, labels=[1, 0, 1])

    def test_per_label_f1_rejects_negative_labels(self) -> None:
        with pytest.raises(ValueError, match=_message("labels holds a negative label id: -1")):
            per_label_f1(Y_TRUE, Y_PRED, labels=[0, -1])

    def test_per_label_f1_rejects_empty_input(self) -> None:
        with pytest.raises(ValueError, match=_message("cannot evaluate an empty set")):
            per_label_f1(np.array([], dtype=np.int64), np.array([], dtype=np.int64))


class TestMacroF1:
    def test_macro_f1_exact_on_hand_case(self) -> None:
        assert macro_f1(Y_TRUE, Y_PRED) == pytest.approx((2 / 3 + 4 / 5 + 1.0) / 3)

    def test_macro_f1_default_ignores_labels_only_predicted(self) -> None:
        # Label 4 is predicted once but never true: it costs label 1 recall, not a term in the mean.
        assert macro_f1([0, 1], [0, 4]) == pytest.approx((1.0 + 0.0) / 2)

    def test_macro_f1_weighs_each_label_equally(self) -> None:
        y_true = [0] * 9 + [1]
        y_pred = [0] * 10
        assert macro_f1(y_true, y_pred) == pytest.approx((18 / 19 + 0.0) / 2)

    def test_macro_f1_over_given_labels_counts_absent_label_as_zero(self) -> None:
        assert macro_f1([0, 1], [0, 1], labels=[0, 1, 2, 3]) == 0.5

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_macro_f1_agrees_with_sklearn(self, seed: int) -> None:
        y_true, y_pred = _random_case(seed, n=500, n_labels=8)
        labels = sorted(set(y_true.tolist()))
        expected = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        assert macro_f1(y_true, y_pred) == pytest.approx(expected)

    def test_macro_f1_agrees_with_sklearn_on_given_labels(self) -> None:
        y_true, y_pred = _random_case(5, n=300, n_labels=5)
        labels = [0, 1, 2, 3, 4, 5, 6, 11]
        expected = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        assert macro_f1(y_true, y_pred, labels=labels) == pytest.approx(expected)

    def test_macro_f1_rejects_mismatched_lengths(self) -> None:
        with pytest.raises(ValueError, match=_message("y_true and y_pred have different lengths: 1 != 2")):
            macro_f1([0], [0, 0])


class TestConfusionCounts:
    def test_confusion_counts_exact_sparse_cells(self) -> None:
        assert confusion_counts(Y_TRUE, Y_PRED) == {(0, 0): 1, (0, 1): 1, (1, 1): 2, (2, 2): 1}

    def test_confusion_counts_is_sorted_by_true_then_predicted(self) -> None:
        assert list(confusion_counts([3, 1, 3, 0], [0, 2, 3, 5])) == [(0, 5), (1, 2), (3, 0), (3, 3)]

    def test_confusion_counts_sum_to_n_with_python_ints(self) -> None:
        counts = confusion_counts(np.array([4, 4, 4]), np.array([4, 4, 1]))
        assert counts == {(4, 1): 1, (4, 4): 2}
        assert all(type(v) is int and all(type(i) is int for i in k) for k, v in counts.items())

    def test_confusion_counts_agrees_with_sklearn(self) -> None:
        y_true, y_pred = _random_case(3, n=400, n_labels=6)
        labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
        dense = confusion_matrix(y_true, y_pred, labels=labels)
        expected = {
            (labels[i], labels[j]): int(dense[i, j])
            for i in range(len(labels))
            for j in range(len(labels))
            if dense[i, j]
        }
        assert confusion_counts(y_true, y_pred) == expected

    def test_confusion_counts_rejects_empty_input(self) -> None:
        with pytest.raises(ValueError, match=_message("cannot evaluate an empty set")):
            confusion_counts([], [])


class TestNegativeFlipRate:
    def test_negative_flip_rate_exact_on_hand_case(self) -> None:
        y_true = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
        old = [0, 1, 2, 3, 0, 1, 0, 0, 0, 0]  # right on samples 0-5 and 8
        new = [0, 1, 0, 0, 0, 0, 2, 3, 1, 1]  # breaks 2, 3, 5 and 8; fixes 6, 7 and 9
        assert negative_flip_rate(y_true, old, new) == 0.4

    def test_negative_flip_rate_denominator_is_all_samples(self) -> None:
        # Old gets one of four right and new breaks it: 1/4, not 1/1.
        assert negative_flip_rate([0, 1, 2, 3], [0, 0, 0, 0], [1, 1, 1, 1]) == 0.25

    def test_negative_flip_rate_ignores_positive_flips_and_changed_wrong_answers(self) -> None:
        assert negative_flip_rate([0, 0, 0], [1, 1, 0], [0, 2, 0]) == 0.0

    def test_negative_flip_rate_of_a_model_with_itself_is_zero(self) -> None:
        y_true, y_pred = _random_case(0, n=100, n_labels=4)
        assert negative_flip_rate(y_true, y_pred, y_pred) == 0.0

    def test_negative_flip_rate_is_at_most_old_accuracy(self) -> None:
        y_true, old = _random_case(1, n=200, n_labels=4)
        _, new = _random_case(2, n=200, n_labels=4)
        rate = negative_flip_rate(y_true, old, new)
        assert 0.0 < rate <= accuracy(y_true, old)
        assert rate == pytest.approx(np.mean((old == y_true) & (new != y_true)))

    def test_negative_flip_rate_rejects_mismatched_lengths_naming_the_array(self) -> None:
        with pytest.raises(ValueError, match=_message("y_true and new_pred have different lengths: 2 != 3")):
            negative_flip_rate([0, 1], [0, 1], [0, 1, 1])

    def test_negative_flip_rate_rejects_negative_old_prediction(self) -> None:
        with pytest.raises(ValueError, match=_message("old_pred holds a negative label id: -2")):
            negative_flip_rate([0, 1], [0, -2], [0, 1])

    def test_negative_flip_rate_rejects_empty_input(self) -> None:
        with pytest.raises(ValueError, match=_message("cannot evaluate an empty set")):
            negative_flip_rate([], [], [])


class TestLabelDrops:
    def test_label_drops_are_signed_old_minus_new(self) -> None:
        old = {0: 0.9, 1: 0.5, 2: 0.7}
        new = {0: 0.6, 1: 0.75, 2: 0.7, 3: 0.8}
        assert label_drops(old, new, labels=[0, 1, 2]) == pytest.approx({0: 0.3, 1: -0.25, 2: 0.0})

    def test_label_drops_cover_only_the_given_labels_in_order(self) -> None:
        assert list(label_drops({0: 1.0, 1: 1.0, 2: 1.0}, {0: 1.0, 1: 0.0, 2: 1.0}, labels=[2, 1])) == [2, 1]

    def test_label_drops_max_names_the_worst_slice(self) -> None:
        drops = label_drops({0: 0.9, 1: 0.8}, {0: 0.85, 1: 0.4}, labels=[0, 1])
        assert max(drops, key=drops.__getitem__) == 1
        assert max(drops.values()) == pytest.approx(0.4)

    def test_label_drops_rejects_a_label_missing_from_new_scores(self) -> None:
        with pytest.raises(ValueError, match=_message("new_scores has no score for label 1")):
            label_drops({0: 0.5, 1: 0.5}, {0: 0.5}, labels=[0, 1])

    def test_label_drops_rejects_a_label_missing_from_old_scores(self) -> None:
        with pytest.raises(ValueError, match=_message("old_scores has no score for label 4")):
            label_drops({0: 0.5}, {0: 0.5, 4: 0.1}, labels=[4])

    def test_label_drops_rejects_empty_labels(self) -> None:
        with pytest.raises(ValueError, match=_message("labels must not be empty")):
            label_drops({0: 0.5}, {0: 0.5}, labels=[])


class TestForgetting:
    def test_forgetting_is_mean_of_clipped_drops(self) -> None:
        old = {0: 0.9, 1: 0.5, 2: 0.7}
        new = {0: 0.6, 1: 0.75, 2: 0.7}
        assert forgetting(old, new, labels=[0, 1, 2]) == pytest.approx((0.3 + 0.0 + 0.0) / 3)

    def test_forgetting_gain_on_one_label_does_not_offset_loss_on_another(self) -> None:
        assert forgetting({0: 0.5, 1: 0.5}, {0: 1.0, 1: 0.0}, labels=[0, 1]) == 0.25

    def test_forgetting_is_zero_when_nothing_drops(self) -> None:
        assert forgetting({0: 0.4}, {0: 0.9}, labels=[0]) == 0.0

    def test_forgetting_from_per_label_f1(self) -> None:
        y_true = [0, 0, 1, 1]
        old = per_label_f1(y_true, [0, 0, 1, 1])
        new = per_label_f1(y_true, [0, 0, 0, 1])  # label 0: 4/5, label 1: 2/3
        assert forgetting(old, new, labels=[0, 1]) == pytest.approx(((1 - 4 / 5) + (1 - 2 / 3)) / 2)

    def test_forgetting_rejects_empty_labels(self) -> None:
        with pytest.raises(ValueError, match=_message("labels must not be empty")):
            forgetting({}, {}, labels=[])


class TestEvaluate:
    def test_evaluate_exact_on_hand_case(self) -> None:
        report = evaluate(Y_TRUE, Y_PRED)
        assert report.n == 5
        assert report.accuracy == 0.8
        assert report.macro_f1 == pytest.approx((2 / 3 + 4 / 5 + 1.0) / 3)
        assert dict(report.per_label_f1) == pytest.approx({0: 2 / 3, 1: 4 / 5, 2: 1.0})
        assert dict(report.support) == {0: 2, 1: 2, 2: 1}
        assert dict(report.confusion) == {(0, 0): 1, (0, 1): 1, (1, 1): 2, (2, 2): 1}
        assert report.labels == (0, 1, 2)

    def test_evaluate_matches_the_single_metric_functions(self) -> None:
        y_true, y_pred = _random_case(7, n=300, n_labels=6)
        labels = [5, 1, 9]
        report = evaluate(y_true, y_pred, labels=labels)
        assert report.accuracy == accuracy(y_true, y_pred)
        assert report.macro_f1 == macro_f1(y_true, y_pred, labels=labels)
        assert dict(report.per_label_f1) == per_label_f1(y_true, y_pred, labels=labels)
        assert dict(report.confusion) == confusion_counts(y_true, y_pred)
        assert dict(report.support) == {5: int(np.sum(y_true == 5)), 1: int(np.sum(y_true == 1)), 9: 0}

    def test_evaluate_labels_restrict_f1_but_not_accuracy(self) -> None:
        report = evaluate([0, 1, 2], [0, 2, 2], labels=[0])
        assert report.accuracy == pytest.approx(2 / 3)
        assert report.macro_f1 == 1.0
        assert report.labels == (0,)
        assert report.n == 3

    def test_evaluate_rejects_empty_input(self) -> None:
        with pytest.raises(ValueError, match=_message("cannot evaluate an empty set")):
            evaluate([], [])

    def test_evaluate_rejects_mismatched_lengths(self) -> None:
        with pytest.raises(ValueError, match=_message("y_true and y_pred have different lengths: 0 != 1")):
            evaluate([], [1])


class TestEvaluationReport:
    def test_to_dict_is_json_serialisable_with_string_label_keys(self) -> None:
        data = json.loads(json.dumps(evaluate(np.array(Y_TRUE), np.array(Y_PRED)).to_dict()))
        assert data == {
            "n": 5,
            "accuracy": 0.8,
            "macro_f1": pytest.approx((2 / 3 + 4 / 5 + 1.0) / 3),
            "per_label_f1": {"0": pytest.approx(2 / 3), "1": pytest.approx(4 / 5), "2": 1.0},
            "support": {"0": 2, "1": 2, "2": 1},
            "confusion": [[0, 0, 1], [0, 1, 1], [1, 1, 2], [2, 2, 1]],
        }

    def test_from_dict_round_trips_through_json(self) -> None:
        y_true, y_pred = _random_case(4, n=200, n_labels=5)
        report = evaluate(y_true, y_pred, labels=[4, 0, 2])
        again = EvaluationReport.from_dict(json.loads(json.dumps(report.to_dict())))
        assert again == report
        assert again.labels == (4, 0, 2)

    def test_report_is_frozen(self) -> None:
        report = evaluate(Y_TRUE, Y_PRED)
        with pytest.raises(AttributeError):
            report.accuracy = 1.0  # type: ignore[misc]

    def test_report_mappings_are_read_only(self) -> None:
        report = evaluate(Y_TRUE, Y_PRED)
        with pytest.raises(TypeError):
            report.per_label_f1[0] = 1.0  # type: ignore[index]

    def test_report_does_not_share_the_mappings_it_was_given(self) -> None:
        scores = {0: 0.5}
        report = EvaluationReport(n=2, accuracy=0.5, macro_f1=0.5, per_label_f1=scores, support={0: 1})
        scores[0] = 1.0
        assert report.per_label_f1[0] == 0.5
        assert dict(report.confusion) == {}

    def test_report_rejects_mismatched_label_sets(self) -> None:
        with pytest.raises(
            ValueError, match=_message("per_label_f1 and support must cover the same labels in the same order")
        ):
            EvaluationReport(n=2, accuracy=0.5, macro_f1=0.5, per_label_f1={0: 0.5}, support={1: 1})
