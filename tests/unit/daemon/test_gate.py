from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Mapping

import pytest
from pydantic import ValidationError

from daemon.training.gate import AbstainOutcome, Check, Decision, GateInput, GatePolicy, SetMetrics, decide

FIRST_MODEL_CHECKS = ("eval_samples", "min_absolute")


def _set(
    name: str,
    macro_f1: float,
    *,
    n: int = 200,
    accuracy: float | None = None,
    f1: Mapping[str, float] | None = None,
    support: Mapping[str, int] | None = None,
) -> SetMetrics:
    return SetMetrics(
        name=name,
        n=n,
        accuracy=macro_f1 if accuracy is None else accuracy,
        macro_f1=macro_f1,
        per_label_f1={} if f1 is None else f1,
        support={} if support is None else support,
    )


def _sets(*sets: SetMetrics) -> dict[str, SetMetrics]:
    return {s.name: s for s in sets}


def _compare(
    candidate: dict[str, SetMetrics],
    production: dict[str, SetMetrics],
    *,
    flips: float | None = 0.01,
    old_labels: tuple[str, ...] = (),
) -> GateInput:
    return GateInput(candidate=candidate, production=production, negative_flip_rate=flips, old_labels=old_labels)


def _first(candidate: dict[str, SetMetrics]) -> GateInput:
    return GateInput(candidate=candidate, production=None, negative_flip_rate=None, old_labels=())


def _by_name(decision: Decision) -> dict[str, Check]:
    return {check.name: check for check in decision.checks}


class TestDecideFirstModel:
    def test_decide_first_model_above_min_absolute_is_promoted(self) -> None:
        decision = decide(_first(_sets(_set("all", 0.71))), GatePolicy())
        assert decision.promote is True
        assert decision.summary == "promote: all 2 checks passed"
        assert decision.checks == (
            Check("eval_samples", True, 200.0, 1.0, "all has 200 held-out samples (need >= 1)"),
            Check(
                "min_absolute", True, 0.71, 0.5,
                "macro_f1 on all: 0.710 (need >= 0.500; first model, no production to compare with)",
            ),
        )
        assert decision.failed == ()

    def test_decide_first_model_below_min_absolute_is_rejected(self) -> None:
        decision = decide(_first(_sets(_set("all", 0.42))), GatePolicy())
        assert decision.promote is False
        assert decision.summary == "reject: min_absolute failed"
        assert [c.name for c in decision.failed] == ["min_absolute"]
        assert decision.failed[0].value == 0.42
        assert decision.failed[0].threshold == 0.5
        assert decision.failed[0].detail == (
            "macro_f1 on all: 0.420 (need >= 0.500; first model, no production to compare with)"
        )

    def test_decide_first_model_exactly_at_min_absolute_is_promoted(self) -> None:
        decision = decide(_first(_sets(_set("all", 0.6))), GatePolicy(min_absolute=0.6))
        assert decision.promote is True

    def test_decide_first_model_with_too_few_eval_samples_is_rejected(self) -> None:
        decision = decide(_first(_sets(_set("all", 0.95, n=3))), GatePolicy(min_eval_samples=50))
        assert decision.promote is False
        assert decision.summary == "reject: eval_samples failed"
        assert tuple(c.name for c in decision.checks) == FIRST_MODEL_CHECKS
        assert decision.failed == (
            Check("eval_samples", False, 3.0, 50.0, "all has 3 held-out samples (need >= 50)"),
        )

    def test_decide_first_model_uses_the_policy_primary_metric_and_set(self) -> None:
        sets = _sets(_set("all", 0.3), _set("recent", 0.45, accuracy=0.9, n=40))
        policy = GatePolicy(primary_metric="accuracy", primary_set="recent", min_eval_samples=40)
        decision = decide(_first(sets), policy)
        assert decision.promote is True
        assert _by_name(decision)["min_absolute"].detail == (
            "accuracy on recent: 0.900 (need >= 0.500; first model, no production to compare with)"
        )
        assert _by_name(decision)["eval_samples"].detail == "recent has 40 held-out samples (need >= 40)"


class TestDecidePrimaryImprovement:
    def test_decide_better_candidate_is_promoted(self) -> None:
        decision = decide(_compare(_sets(_set("all", 0.812)), _sets(_set("all", 0.790))), GatePolicy())
        assert decision.promote is True
        assert decision.summary == "promote: all 4 checks passed"
        assert tuple(c.name for c in decision.checks) == (
            "eval_samples", "primary_improvement", "old_label_forgetting", "negative_flip_rate",
        )
        check = _by_name(decision)["primary_improvement"]
        assert check.passed is True
        assert check.value == pytest.approx(0.022)
        assert check.threshold == 0.0
        assert check.detail == "macro_f1 on all: 0.812 vs production 0.790 (+0.022, need >= +0.000)"

    def test_decide_worse_candidate_is_rejected_with_the_numbers(self) -> None:
        decision = decide(_compare(_sets(_set("all", 0.75)), _sets(_set("all", 0.79))), GatePolicy())
        assert decision.promote is False
        assert decision.summary == "reject: primary_improvement failed"
        (check,) = decision.failed
        assert check.name == "primary_improvement"
        assert check.value == pytest.approx(-0.04)
        assert check.threshold == 0.0
        assert check.detail == "macro_f1 on all: 0.750 vs production 0.790 (-0.040, need >= +0.000)"

    def test_decide_equal_candidate_with_zero_min_improvement_is_promoted(self) -> None:
        decision = decide(_compare(_sets(_set("all", 0.79)), _sets(_set("all", 0.79))), GatePolicy())
        assert decision.promote is True
        assert _by_name(decision)["primary_improvement"].detail == (
            "macro_f1 on all: 0.790 vs production 0.790 (+0.000, need >= +0.000)"
        )

    def test_decide_improvement_below_min_improvement_is_rejected(self) -> None:
        decision = decide(
            _compare(_sets(_set("all", 0.80)), _sets(_set("all", 0.79))), GatePolicy(min_improvement=0.02)
        )
        assert decision.summary == "reject: primary_improvement failed"
        assert decision.failed[0].detail == "macro_f1 on all: 0.800 vs production 0.790 (+0.010, need >= +0.020)"

    def test_decide_improvement_exactly_at_threshold_passes_despite_float_rounding(self) -> None:
        assert 0.30 - 0.25 < 0.05  # the binary rounding the gate tolerates
        decision = decide(
            _compare(_sets(_set("all", 0.30)), _sets(_set("all", 0.25))), GatePolicy(min_improvement=0.05)
        )
        assert decision.promote is True

    def test_decide_accuracy_as_primary_metric_ignores_macro_f1(self) -> None:
        candidate = _sets(_set("all", 0.50, accuracy=0.91))
        production = _sets(_set("all", 0.70, accuracy=0.90))
        decision = decide(_compare(candidate, production), GatePolicy(primary_metric="accuracy"))
        assert decision.promote is True
        assert _by_name(decision)["primary_improvement"].detail == (
            "accuracy on all: 0.910 vs production 0.900 (+0.010, need >= +0.000)"
        )


class TestDecideOldLabelForgetting:
    def test_decide_new_labels_up_but_old_labels_forgotten_is_rejected(self) -> None:
        candidate = _sets(_set("all", 0.85), _set("old_labels", 0.70), _set("new_labels", 0.95))
        production = _sets(_set("all", 0.80), _set("old_labels", 0.85), _set("new_labels", 0.0))
        decision = decide(_compare(candidate, production), GatePolicy())
        assert decision.promote is False
        assert decision.summary == "reject: old_label_forgetting failed"
        assert _by_name(decision)["primary_improvement"].passed is True
        (check,) = decision.failed
        assert check.name == "old_label_forgetting"
        assert check.value == pytest.approx(0.15)
        assert check.threshold == 0.05
        assert check.detail == "macro_f1 on old_labels: 0.700 vs production 0.850 (drop 0.150, allowed <= 0.050)"

    def test_decide_old_label_drop_within_max_forgetting_passes(self) -> None:
        candidate = _sets(_set("all", 0.85), _set("old_labels", 0.82))
        production = _sets(_set("all", 0.80), _set("old_labels", 0.85))
        decision = decide(_compare(candidate, production), GatePolicy())
        assert decision.promote is True
        assert _by_name(decision)["old_label_forgetting"].value == pytest.approx(0.03)

    def test_decide_without_old_labels_set_passes_saying_so(self) -> None:
        decision = decide(_compare(_sets(_set("all", 0.8)), _sets(_set("all", 0.8))), GatePolicy())
        assert _by_name(decision)["old_label_forgetting"] == Check(
            "old_label_forgetting", True, None, 0.05, "no old_labels set: no old labels to forget"
        )

    def test_decide_with_empty_old_labels_set_passes_saying_so(self) -> None:
        candidate = _sets(_set("all", 0.8), _set("old_labels", 0.0, n=0))
        decision = decide(_compare(candidate, _sets(_set("all", 0.8))), GatePolicy())
        assert _by_name(decision)["old_label_forgetting"] == Check(
            "old_label_forgetting", True, None, 0.05, "the old_labels set is empty: no old labels to forget"
        )


class TestDecideLabelForgetting:
    def test_decide_drop_on_well_supported_label_is_rejected(self) -> None:
        candidate = _sets(_set("all", 0.85, f1={"billing": 0.5, "card": 0.95}, support={"billing": 40, "card": 40}))
        production = _sets(_set("all", 0.80, f1={"billing": 0.9, "card": 0.9}, support={"billing": 40, "card": 40}))
        decision = decide(_compare(candidate, production, old_labels=("card", "billing")), GatePolicy())
        assert decision.promote is False
        assert decision.summary == "reject: label_forgetting:billing failed"
        assert tuple(c.name for c in decision.checks) == (
            "eval_samples", "primary_improvement", "old_label_forgetting",
            "label_forgetting:billing", "label_forgetting:card", "negative_flip_rate",
        )
        (check,) = decision.failed
        assert check.value == pytest.approx(0.4)
        assert check.threshold == 0.25
        assert check.detail == (
            "F1 of 'billing' on all (support 40): 0.500 vs production 0.900 (drop 0.400, allowed <= 0.250)"
        )
        assert _by_name(decision)["label_forgetting:card"].passed is True
        assert _by_name(decision)["label_forgetting:card"].value == pytest.approx(-0.05)

    def test_decide_same_drop_below_min_label_support_is_not_checked(self) -> None:
        candidate = _sets(_set("all", 0.85, f1={"billing": 0.5}, support={"billing": 9}))
        production = _sets(_set("all", 0.80, f1={"billing": 0.9}, support={"billing": 9}))
        decision = decide(_compare(candidate, production, old_labels=("billing",)), GatePolicy())
        assert decision.promote is True
        assert [c.name for c in decision.checks if c.name.startswith("label_forgetting")] == []

    def test_decide_label_exactly_at_min_label_support_is_checked(self) -> None:
        candidate = _sets(_set("all", 0.85, f1={"billing": 0.5}, support={"billing": 10}))
        production = _sets(_set("all", 0.80, f1={"billing": 0.9}, support={"billing": 10}))
        decision = decide(_compare(candidate, production, old_labels=("billing",)), GatePolicy())
        assert decision.summary == "reject: label_forgetting:billing failed"

    def test_decide_new_labels_are_not_checked_for_forgetting(self) -> None:
        candidate = _sets(_set("all", 0.85, f1={"billing": 0.9, "loans": 0.1}, support={"billing": 40, "loans": 40}))
        production = _sets(_set("all", 0.80, f1={"billing": 0.9, "loans": 0.0}, support={"billing": 40, "loans": 40}))
        decision = decide(_compare(candidate, production, old_labels=("billing",)), GatePolicy())
        assert [c.name for c in decision.checks if c.name.startswith("label_forgetting")] == [
            "label_forgetting:billing"
        ]

    def test_decide_old_label_without_production_f1_raises(self) -> None:
        candidate = _sets(_set("all", 0.85, f1={"billing": 0.9}, support={"billing": 40}))
        production = _sets(_set("all", 0.80))
        with pytest.raises(ValueError, match="^production set 'all' has no F1 for old label 'billing'$"):
            decide(_compare(candidate, production, old_labels=("billing",)), GatePolicy())


class TestDecideNegativeFlipRate:
    def test_decide_flip_rate_above_limit_is_rejected_at_equal_accuracy(self) -> None:
        sets = _sets(_set("all", 0.8))
        decision = decide(_compare(sets, sets, flips=0.12), GatePolicy())
        assert decision.summary == "reject: negative_flip_rate failed"
        assert decision.failed == (
            Check("negative_flip_rate", False, 0.12, 0.05, "negative flip rate on all: 0.120 (allowed <= 0.050)"),
        )

    def test_decide_unmeasured_flip_rate_with_production_fails(self) -> None:
        sets = _sets(_set("all", 0.8))
        decision = decide(_compare(sets, sets, flips=None), GatePolicy())
        assert decision.promote is False
        assert decision.failed == (
            Check(
                "negative_flip_rate", False, None, 0.05,
                "negative flip rate not measured (need <= 0.050 against production)",
            ),
        )


class TestDecideAbstainRate:
    """The candidate must not abstain on much more in-scope traffic than production."""

    @staticmethod
    def _with(abstain: AbstainOutcome, *, production: bool = True) -> GateInput:
        sets = _sets(_set("all", 0.8))
        if not production:
            return GateInput(candidate=sets, production=None, negative_flip_rate=None, old_labels=(), abstain=abstain)
        return GateInput(candidate=sets, production=sets, negative_flip_rate=0.01, old_labels=(), abstain=abstain)

    def test_a_rate_near_production_passes_and_is_recorded(self) -> None:
        decision = decide(self._with(AbstainOutcome(12, 200, 10, 200)), GatePolicy())
        check = _by_name(decision)["abstain_rate"]
        assert decision.promote and check.passed and check.value == pytest.approx(0.06)
        assert check.threshold == pytest.approx(0.10)
        assert decision.checks[-1].name == "abstain_rate"

    def test_abstaining_on_far_more_in_scope_traffic_is_rejected(self) -> None:
        decision = decide(self._with(AbstainOutcome(60, 200, 10, 200)), GatePolicy())
        assert decision.summary == "reject: abstain_rate failed"
        assert "significant at 0.01" in decision.failed[0].detail

    def test_a_rate_barely_over_on_few_samples_is_noise(self) -> None:
        # 3 of 20 (0.15) against a limit of 0.10: well within sampling error.
        decision = decide(self._with(AbstainOutcome(3, 20, 1, 20)), GatePolicy())
        assert decision.promote
        assert "not significant" in _by_name(decision)["abstain_rate"].detail

    def test_without_a_production_calibration_the_rate_is_recorded_only(self) -> None:
        for gate_input in (self._with(AbstainOutcome(150, 200)), self._with(AbstainOutcome(150, 200), production=False)):
            check = _by_name(decide(gate_input, GatePolicy()))["abstain_rate"]
            assert check.passed and check.threshold is None and "no production calibration" in check.detail

    def test_impossible_counts_are_refused(self) -> None:
        with pytest.raises(ValueError, match="candidate_abstained exceeds candidate_n"):
            AbstainOutcome(5, 4)
        with pytest.raises(TypeError, match="candidate_n must be an int"):
            AbstainOutcome(1, 2.5)  # type: ignore[arg-type]


class TestDecidePoisonedCandidate:
    def test_decide_poisoned_candidate_is_rejected_for_forgetting_and_flips(self) -> None:
        candidate = _sets(
            _set("all", 0.81, f1={"billing": 0.05, "card": 0.10}, support={"billing": 50, "card": 50}),
            _set("old_labels", 0.20),
            _set("new_labels", 0.99),
        )
        production = _sets(
            _set("all", 0.80, f1={"billing": 0.92, "card": 0.88}, support={"billing": 50, "card": 50}),
            _set("old_labels", 0.90),
            _set("new_labels", 0.0),
        )
        decision = decide(_compare(candidate, production, flips=0.45, old_labels=("billing", "card")), GatePolicy())
        assert decision.promote is False
        assert decision.summary == (
            "reject: old_label_forgetting, label_forgetting:billing, label_forgetting:card, negative_flip_rate failed"
        )
        checks = _by_name(decision)
        assert checks["old_label_forgetting"].detail == (
            "macro_f1 on old_labels: 0.200 vs production 0.900 (drop 0.700, allowed <= 0.050)"
        )
        assert checks["negative_flip_rate"].detail == "negative flip rate on all: 0.450 (allowed <= 0.050)"


class TestDecideListsEveryCheck:
    def test_decide_does_not_short_circuit_after_a_failure(self) -> None:
        candidate = _sets(_set("all", 0.5, n=0, f1={"a": 0.1}, support={"a": 0}), _set("old_labels", 0.1))
        production = _sets(_set("all", 0.9, f1={"a": 0.9}), _set("old_labels", 0.9))
        decision = decide(_compare(candidate, production, flips=None, old_labels=("a",)), GatePolicy())
        assert [(c.name, c.passed) for c in decision.checks] == [
            ("eval_samples", False),
            ("primary_improvement", False),
            ("old_label_forgetting", False),
            ("negative_flip_rate", False),
        ]
        assert decision.summary == (
            "reject: eval_samples, primary_improvement, old_label_forgetting, negative_flip_rate failed"
        )

    def test_decide_first_model_lists_both_checks_when_both_fail(self) -> None:
        decision = decide(_first(_sets(_set("all", 0.0, n=0))), GatePolicy())
        assert [(c.name, c.passed) for c in decision.checks] == [("eval_samples", False), ("min_absolute", False)]

    def test_decide_is_deterministic(self) -> None:
        candidate = _sets(_set("all", 0.85, f1={"b": 0.5, "a": 0.5}, support={"a": 20, "b": 20}))
        production = _sets(_set("all", 0.8, f1={"a": 0.9, "b": 0.9}, support={"a": 20, "b": 20}))
        gate_input = _compare(candidate, production, old_labels=("b", "a", "b"))
        assert decide(gate_input, GatePolicy()) == decide(gate_input, GatePolicy())
        assert [c.name for c in decide(gate_input, GatePolicy()).checks][3:5] == [
            "label_forgetting:a", "label_forgetting:b"
        ]


class TestDecisionToDict:
    def test_to_dict_round_trips_through_json(self) -> None:
        decision = decide(_compare(_sets(_set("all", 0.75)), _sets(_set("all", 0.79)), flips=None), GatePolicy())
        data = decision.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert data["promote"] is False
        assert data["summary"] == "reject: primary_improvement, negative_flip_rate failed"
        assert data["checks"][0] == {
            "name": "eval_samples", "passed": True, "value": 200.0, "threshold": 1.0,
            "detail": "all has 200 held-out samples (need >= 1)",
        }
        assert Decision.from_dict(json.loads(json.dumps(data))) == decision


class TestGatePolicy:
    def test_gate_policy_defaults(self) -> None:
        assert GatePolicy().model_dump() == {
            "primary_metric": "macro_f1", "primary_set": "all", "min_improvement": 0.0, "max_forgetting": 0.05,
            "max_label_forgetting": 0.25, "min_label_support": 10, "label_forgetting_alpha": 0.01,
            "max_negative_flip_rate": 0.05, "flip_rate_alpha": 0.01, "max_abstain_increase": 0.05,
            "abstain_alpha": 0.01, "min_absolute": 0.5, "min_eval_samples": 1,
            "slices": (), "slice_top_n": 5, "slice_min_support": 30, "max_slice_forgetting": 0.05,
            "slice_alpha": 0.01, "slice_min_coverage": 0.5,
        }

    def test_gate_policy_rejects_unknown_keys(self) -> None:
        with pytest.raises(ValidationError, match=r"max_forgeting\n  Extra inputs are not permitted"):
            GatePolicy.model_validate({"max_forgeting": 0.1})

    @pytest.mark.parametrize(
        "field",
        ["min_improvement", "max_forgetting", "max_label_forgetting", "max_negative_flip_rate", "min_absolute"],
    )
    def test_gate_policy_rejects_negative_thresholds(self, field: str) -> None:
        with pytest.raises(ValidationError, match=rf"{field}\n  Input should be greater than or equal to 0"):
            GatePolicy.model_validate({field: -0.01})

    @pytest.mark.parametrize("field", ["min_label_support", "min_eval_samples"])
    def test_gate_policy_rejects_counts_below_one(self, field: str) -> None:
        with pytest.raises(ValidationError, match=rf"{field}\n  Input should be greater than or equal to 1"):
            GatePolicy.model_validate({field: 0})

    def test_gate_policy_rejects_nan(self) -> None:
        with pytest.raises(ValidationError, match=r"max_forgetting\n  Input should be a finite number"):
            GatePolicy(max_forgetting=float("nan"))

    def test_gate_policy_rejects_unknown_metric(self) -> None:
        with pytest.raises(ValidationError, match=r"primary_metric\n  Input should be 'macro_f1' or 'accuracy'"):
            GatePolicy.model_validate({"primary_metric": "f1"})

    def test_gate_policy_is_frozen(self) -> None:
        with pytest.raises(ValidationError, match="Instance is frozen"):
            GatePolicy().max_forgetting = 0.5  # type: ignore[misc]


class TestDecideBadInput:
    def test_decide_candidate_without_primary_set_raises(self) -> None:
        message = "candidate has no evaluation set 'recent' (the policy's primary_set); it has: ['all']"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            decide(_first(_sets(_set("all", 0.9))), GatePolicy(primary_set="recent"))

    def test_decide_production_without_primary_set_raises(self) -> None:
        message = "production has no evaluation set 'all' (the policy's primary_set); it has: ['recent']"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            decide(_compare(_sets(_set("all", 0.9)), _sets(_set("recent", 0.9))), GatePolicy())

    def test_decide_production_without_old_labels_set_raises_when_candidate_has_one(self) -> None:
        message = "production has no evaluation set 'old_labels' (to measure forgetting); it has: ['all']"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            decide(_compare(_sets(_set("all", 0.9), _set("old_labels", 0.9)), _sets(_set("all", 0.9))), GatePolicy())

    def test_set_metrics_nan_score_raises(self) -> None:
        with pytest.raises(ValueError, match="^set 'all': macro_f1 is NaN$"):
            _set("all", float("nan"), accuracy=0.5)

    def test_set_metrics_nan_label_f1_raises(self) -> None:
        with pytest.raises(ValueError, match="^set 'all': F1 of 'billing' is NaN$"):
            _set("all", 0.5, f1={"billing": float("nan")})

    def test_set_metrics_score_out_of_range_raises(self) -> None:
        with pytest.raises(ValueError, match="^set 'all': accuracy must be between 0 and 1, got 1.5$"):
            _set("all", 0.5, accuracy=1.5)

    def test_set_metrics_negative_count_raises(self) -> None:
        with pytest.raises(ValueError, match="^set 'all': n must be >= 0, got -1$"):
            _set("all", 0.5, n=-1)

    def test_gate_input_nan_flip_rate_raises(self) -> None:
        with pytest.raises(ValueError, match="^negative_flip_rate is NaN$"):
            _compare(_sets(_set("all", 0.5)), _sets(_set("all", 0.5)), flips=float("nan"))

    def test_gate_input_flip_rate_without_production_raises(self) -> None:
        with pytest.raises(
            ValueError, match="^negative_flip_rate is given but there is no production model to compare with$"
        ):
            GateInput(candidate=_sets(_set("all", 0.5)), production=None, negative_flip_rate=0.0, old_labels=())

    def test_gate_input_set_under_wrong_key_raises(self) -> None:
        with pytest.raises(ValueError, match=r"^candidate\['recent'\] holds the metrics of set 'all'$"):
            _first({"recent": _set("all", 0.5)})


class TestDecideLeavesInputsAlone:
    def test_decide_does_not_mutate_inputs(self) -> None:
        f1 = {"billing": 0.5, "card": 0.9}
        support = {"billing": 40, "card": 40}
        candidate = {"all": _set("all", 0.85, f1=f1, support=support), "old_labels": _set("old_labels", 0.7)}
        production = {"all": _set("all", 0.8, f1={"billing": 0.9, "card": 0.9}, support=support),
                      "old_labels": _set("old_labels", 0.9)}
        old_labels = ["card", "billing"]
        before = copy.deepcopy((f1, support, candidate, production, old_labels))
        gate_input = GateInput(candidate=candidate, production=production, negative_flip_rate=0.3,
                               old_labels=old_labels)
        policy = GatePolicy()
        decide(gate_input, policy)
        assert (f1, support, candidate, production, old_labels) == before
        assert policy == GatePolicy()
        assert gate_input.old_labels == ("card", "billing")

    def test_gate_input_is_isolated_from_later_changes_to_the_caller_dicts(self) -> None:
        f1 = {"billing": 0.9}
        candidate = {"all": _set("all", 0.9, f1=f1, support={"billing": 40})}
        gate_input = _first(candidate)
        f1["billing"] = 0.0
        candidate["other"] = _set("other", 0.1)
        assert gate_input.candidate == {"all": _set("all", 0.9, f1={"billing": 0.9}, support={"billing": 40})}

    def test_gate_input_survives_deepcopy_and_asdict(self) -> None:
        gate_input = _first({"all": _set("all", 0.9, f1={"billing": 0.9}, support={"billing": 40})})
        assert copy.deepcopy(gate_input) == gate_input
        data = json.loads(json.dumps(dataclasses.asdict(gate_input)))
        assert data["candidate"]["all"] == {
            "name": "all", "n": 200, "accuracy": 0.9, "macro_f1": 0.9,
            "per_label_f1": {"billing": 0.9}, "support": {"billing": 40},
        }


class TestSignTest:
    def test_sign_test_p_exact_values(self) -> None:
        from daemon.training.gate import sign_test_p

        assert sign_test_p(3, 0) == 0.125
        assert sign_test_p(7, 0) == pytest.approx(1 / 128)
        assert sign_test_p(2, 2) == pytest.approx(11 / 16)
        assert sign_test_p(0, 5) == 1.0
        assert sign_test_p(0, 0) == 1.0

    def test_sign_test_p_negative_count_raises(self) -> None:
        from daemon.training.gate import sign_test_p

        with pytest.raises(ValueError, match=r"^counts must be >= 0, got lost=-1, gained=0$"):
            sign_test_p(-1, 0)


class TestPairedOutcome:
    def test_paired_outcome_more_discordant_than_samples_raises(self) -> None:
        from daemon.training.gate import PairedOutcome

        with pytest.raises(ValueError, match=r"^paired outcome: lost \+ gained \(11\) exceeds n \(10\)$"):
            PairedOutcome(n=10, lost=6, gained=5)

    def test_paired_outcome_wrong_type_raises(self) -> None:
        from daemon.training.gate import PairedOutcome

        with pytest.raises(TypeError, match=r"^paired outcome: lost must be an int, got float$"):
            PairedOutcome(n=10, lost=1.0, gained=0)  # type: ignore[arg-type]

    def test_gate_input_rejects_a_non_outcome(self) -> None:
        sets = _sets(_set("all", 0.8))
        with pytest.raises(TypeError, match=r"^label_outcomes\['a'\] must be a PairedOutcome, got tuple$"):
            GateInput(candidate=sets, production=sets, negative_flip_rate=0.0, old_labels=("a",),
                      label_outcomes={"a": (10, 1, 0)})  # type: ignore[dict-item]


class TestDecideLabelForgettingSignificance:
    """With paired outcomes, a per-label F1 drop must be significant as well as large."""

    @staticmethod
    def _decide(lost: int, gained: int, before: float, after: float, support: int = 10) -> Decision:
        from daemon.training.gate import PairedOutcome

        candidate = _sets(_set("all", 0.85, f1={"billing": after}, support={"billing": support}))
        production = _sets(_set("all", 0.80, f1={"billing": before}, support={"billing": support}))
        return decide(
            GateInput(candidate=candidate, production=production, negative_flip_rate=0.01, old_labels=("billing",),
                      label_outcomes={"billing": PairedOutcome(n=support, lost=lost, gained=gained)}),
            GatePolicy(),
        )

    def test_decide_three_lost_answers_on_ten_samples_do_not_veto(self) -> None:
        # The stage-13 stall: F1 fell 0.275 on a label's 10 held-out samples.
        decision = self._decide(lost=3, gained=0, before=1.0, after=0.725)
        assert decision.promote is True
        check = _by_name(decision)["label_forgetting:billing"]
        assert check.passed is True
        assert check.value == pytest.approx(0.275)
        assert check.detail == (
            "F1 of 'billing' on all (support 10): 0.725 vs production 1.000 (drop 0.275, allowed <= 0.250);"
            " 3 of 10 answers lost, 0 gained, sign test p=0.125 (not significant at 0.01)"
        )

    def test_decide_a_label_that_really_collapses_is_rejected(self) -> None:
        decision = self._decide(lost=7, gained=0, before=1.0, after=0.46)
        assert decision.summary == "reject: label_forgetting:billing failed"
        assert decision.failed[0].detail.endswith(
            "; 7 of 10 answers lost, 0 gained, sign test p=0.00781 (significant at 0.01)"
        )

    def test_decide_significant_but_small_drop_passes(self) -> None:
        decision = self._decide(lost=9, gained=0, before=1.0, after=0.8, support=100)
        assert _by_name(decision)["label_forgetting:billing"].passed is True

    def test_decide_label_without_outcome_falls_back_to_the_f1_drop(self) -> None:
        from daemon.training.gate import PairedOutcome

        candidate = _sets(_set("all", 0.85, f1={"billing": 0.5, "card": 0.5}, support={"billing": 40, "card": 40}))
        production = _sets(_set("all", 0.80, f1={"billing": 0.9, "card": 0.9}, support={"billing": 40, "card": 40}))
        decision = decide(
            GateInput(candidate=candidate, production=production, negative_flip_rate=0.01,
                      old_labels=("billing", "card"),
                      label_outcomes={"card": PairedOutcome(n=40, lost=2, gained=0)}),
            GatePolicy(),
        )
        assert decision.summary == "reject: label_forgetting:billing failed"

    def test_decide_policy_alpha_is_respected(self) -> None:
        from daemon.training.gate import PairedOutcome

        candidate = _sets(_set("all", 0.85, f1={"billing": 0.7}, support={"billing": 10}))
        production = _sets(_set("all", 0.80, f1={"billing": 1.0}, support={"billing": 10}))
        gate_input = GateInput(candidate=candidate, production=production, negative_flip_rate=0.01,
                               old_labels=("billing",), label_outcomes={"billing": PairedOutcome(10, 3, 0)})
        assert decide(gate_input, GatePolicy(label_forgetting_alpha=0.2)).promote is False
        assert decide(gate_input, GatePolicy()).promote is True


class TestGateOnALongStream:
    """15 simulated class-incremental stages of 10 labels, ten held-out samples per label.

    An honest candidate is as good as production on every old label: each sample's
    answer changes with a small symmetric probability. A forgetting candidate loses
    one old label entirely. The old gate (F1 drop alone) stalled honest streams; the
    sign test must let them through and still catch the collapse at every stage.
    """

    @staticmethod
    def _stage(rng, labels: int, *, collapse: str | None) -> tuple[GateInput, GateInput]:
        from daemon.training.gate import PairedOutcome
        from learners.evaluate import per_label_f1

        per_label = 10
        y_true = [label for label in range(labels) for _ in range(per_label)]
        names = [f"l{i:03d}" for i in range(labels)]
        prod = [y if rng.random() < 0.9 else int(rng.integers(labels)) for y in y_true]
        cand = []
        for y, p in zip(y_true, prod):
            if collapse is not None and names[y] == collapse:
                cand.append((y + 1) % labels)
            elif rng.random() < 0.08:  # symmetric churn: a right answer may go wrong or a wrong one right
                cand.append(y if p != y else int(rng.integers(labels)))
            else:
                cand.append(p)
        f1_p, f1_c = per_label_f1(y_true, prod), per_label_f1(y_true, cand)
        support = {name: per_label for name in names}
        production = _sets(_set("all", 0.85, f1={names[k]: v for k, v in f1_p.items()}, support=support))
        candidate = _sets(_set("all", 0.85, f1={names[k]: v for k, v in f1_c.items()}, support=support))
        outcomes = {}
        for k, name in enumerate(names):
            idx = range(k * per_label, (k + 1) * per_label)
            lost = sum(prod[i] == y_true[i] != cand[i] for i in idx)
            gained = sum(cand[i] == y_true[i] != prod[i] for i in idx)
            outcomes[name] = PairedOutcome(per_label, lost, gained)
        with_test = GateInput(candidate=candidate, production=production, negative_flip_rate=0.01,
                              old_labels=names, label_outcomes=outcomes)
        without = GateInput(candidate=candidate, production=production, negative_flip_rate=0.01, old_labels=names)
        return with_test, without

    def test_honest_stream_keeps_learning_and_forgetting_is_always_caught(self) -> None:
        import numpy as np

        rng = np.random.default_rng(0)
        policy = GatePolicy()
        honest_new, honest_old, caught = 0, 0, 0
        stages = range(2, 16)
        for stage in stages:
            labels = 10 * (stage - 1)  # production's labels at this stage
            new_gate, old_gate = self._stage(rng, labels, collapse=None)
            honest_new += decide(new_gate, policy).promote
            honest_old += decide(old_gate, policy).promote
            forgetting, _ = self._stage(rng, labels, collapse="l005")
            decision = decide(forgetting, policy)
            caught += (not decision.promote) and [c.name for c in decision.failed] == ["label_forgetting:l005"]
        assert honest_new == len(stages)  # every honest stage promoted
        assert honest_old <= len(stages) - 3  # the F1-drop-only gate stalls several (6 of 14 with this seed)
        assert caught == len(stages)


class TestBinomialTail:
    @pytest.mark.parametrize(("k", "n", "rate"), [(3, 40, 0.05), (1, 1, 0.5), (5, 12, 0.3), (12, 12, 0.9),
                                                  (90, 1400, 0.05)])
    def test_binomial_tail_matches_the_sum_of_terms(self, k: int, n: int, rate: float) -> None:
        import math
        from fractions import Fraction

        from daemon.training.gate import binomial_tail_p

        r = Fraction(str(rate))
        exact = sum(math.comb(n, j) * r**j * (1 - r) ** (n - j) for j in range(k, n + 1))
        assert binomial_tail_p(k, n, rate) == pytest.approx(float(exact), rel=1e-9)

    def test_binomial_tail_edges(self) -> None:
        from daemon.training.gate import binomial_tail_p

        assert binomial_tail_p(0, 0, 0.05) == 1.0
        assert binomial_tail_p(2, 10, 0.0) == 0.0
        assert binomial_tail_p(10, 10, 1.0) == 1.0

    @pytest.mark.parametrize(("k", "n", "rate"), [(5, 4, 0.1), (-1, 4, 0.1), (1, 4, 1.5), (1, 4, -0.1)])
    def test_binomial_tail_refuses_impossible_counts(self, k: int, n: int, rate: float) -> None:
        from daemon.training.gate import binomial_tail_p

        with pytest.raises(ValueError):
            binomial_tail_p(k, n, rate)


class TestDecideFlipRateSignificance:
    """A flip rate over the limit fails only when the flips are significantly more than the limit allows."""

    @staticmethod
    def _flips(lost: int, n: int, gained: int = 0) -> GateInput:
        from daemon.training.gate import PairedOutcome

        sets = _sets(_set("all", 0.9))
        return GateInput(candidate=sets, production=sets, negative_flip_rate=lost / n, old_labels=(),
                         flip_outcome=PairedOutcome(n=n, lost=lost, gained=gained))

    def test_three_flips_in_forty_samples_is_noise(self) -> None:
        check = decide(self._flips(3, 40, gained=2), GatePolicy()).checks[-1]
        assert check.name == "negative_flip_rate" and check.passed
        assert check.value == pytest.approx(0.075)
        assert check.detail == ("negative flip rate on all: 0.075 (allowed <= 0.050); 3 of 40 answers lost, "
                                "binomial test of rate <= 0.05: p=0.323 (not significant at 0.01)")

    def test_the_same_rate_without_counts_still_fails_on_the_point_estimate(self) -> None:
        sets = _sets(_set("all", 0.9))
        decision = decide(GateInput(candidate=sets, production=sets, negative_flip_rate=0.075, old_labels=()),
                          GatePolicy())
        assert decision.summary == "reject: negative_flip_rate failed"

    @pytest.mark.parametrize(("lost", "n"), [(90, 200), (100, 1400), (6, 20)])
    def test_many_flips_are_rejected(self, lost: int, n: int) -> None:
        decision = decide(self._flips(lost, n), GatePolicy())
        assert decision.summary == "reject: negative_flip_rate failed"
        assert "(significant at 0.01)" in decision.checks[-1].detail

    def test_rate_under_the_limit_needs_no_test(self) -> None:
        check = decide(self._flips(1, 100), GatePolicy()).checks[-1]
        assert check.passed and check.detail == "negative flip rate on all: 0.010 (allowed <= 0.050)"

    def test_alpha_sets_how_sure_the_gate_must_be(self) -> None:
        # 14 flips in 140 samples (10%): p = 0.0107 against a true rate of 5%.
        assert decide(self._flips(14, 140), GatePolicy()).promote
        assert not decide(self._flips(14, 140), GatePolicy(flip_rate_alpha=0.05)).promote

    def test_flip_outcome_needs_production(self) -> None:
        from daemon.training.gate import PairedOutcome

        with pytest.raises(ValueError, match="^flip_outcome is given but there is no production model"):
            GateInput(candidate=_sets(_set("all", 0.5)), production=None, negative_flip_rate=None, old_labels=(),
                      flip_outcome=PairedOutcome(10, 1, 0))

    def test_a_stream_of_honest_candidates_passes_and_a_flipping_one_never_does(self) -> None:
        """14 stages, 10 held-out samples per label: honest candidates flip 4% of answers, a bad one 20%."""
        import numpy as np

        rng = np.random.default_rng(0)
        point_estimate_rejections, honest_promoted, bad_rejected = 0, 0, 0
        for stage in range(2, 16):
            n = 100 * (stage - 1)
            honest = int(rng.binomial(n, 0.04))
            point_estimate_rejections += honest / n > 0.05
            honest_promoted += decide(self._flips(honest, n), GatePolicy()).promote
            bad_rejected += not decide(self._flips(int(rng.binomial(n, 0.20)), n), GatePolicy()).promote
        assert honest_promoted == 14 and bad_rejected == 14
        assert point_estimate_rejections == 2  # what the point estimate alone stalls with this seed
