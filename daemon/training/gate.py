"""The promotion gate: should a freshly trained candidate replace production?

A pure function, :func:`decide`, from evaluation results (:class:`GateInput`) and a
policy (:class:`GatePolicy`, the daemon's ``gate:`` settings) to a :class:`Decision`
that lists every check it made, passed or failed, with the numbers behind it.
Nothing here reads storage, talks to Kafka or touches a model;
``daemon/training/lifecycle.py`` gathers the metrics, calls :func:`decide` and stores
``Decision.to_dict()`` as the decision's reasons (DESIGN.md section 3, "Gate").

Why each rule exists
--------------------
``eval_samples``
    A score on a handful of held-out samples is mostly luck. With fewer than
    ``min_eval_samples`` in the primary set nothing is promoted, first model
    included.
``min_absolute`` (first model only)
    With no production model there is nothing to compare against, yet a model
    that is barely better than guessing must not start answering ``/v1/predict``.
``primary_improvement``
    A retrain costs a hot swap and risk; it has to pay for itself on the primary
    metric (default macro-F1 on all held-out labels seen so far).
    ``min_improvement = 0.0`` means "not worse": a candidate that ties
    production is promoted, which lets a model that learned new labels without
    losing anything replace one that could not predict them.
``old_label_forgetting``
    The primary metric averages over every label, so a candidate that learns the
    new labels well can raise it while forgetting the old ones (catastrophic
    forgetting). The old-label slice on its own must not drop by more than
    ``max_forgetting``. Without an old-label slice (or an empty one) there is
    nothing to forget, and the check passes saying so.
``label_forgetting:<label>``
    A slice average can hide one old label collapsing while the others improve,
    so each old label may drop at most ``max_label_forgetting`` in F1. Only
    labels with at least ``min_label_support`` held-out samples in the candidate's
    ``all`` set are checked: on a few samples one prediction moves F1 by a large
    step, and rejecting on that noise would block every retrain.
    Support alone is not enough: on ten samples three changed answers move F1 by
    0.3, and with a hundred old labels some label will do that by chance at every
    retrain (this stalled a 15-stage CLINC150 stream at stage 13). So where the
    evaluation supplies the paired outcomes of the label's samples
    (:class:`PairedOutcome`: how many production got right and the candidate
    wrong, and the reverse), a drop over the limit fails only if it is also
    significant: the exact one-sided sign test on those discordant samples must
    give ``p < label_forgetting_alpha`` (default 0.01). A label that really
    collapses (seven of ten answers lost, none gained: p = 0.008) still fails; a
    label that lost three answers (p = 0.125) does not veto the new labels.
``negative_flip_rate``
    Samples production got right and the candidate gets wrong hurt the people
    relying on those answers even when overall accuracy is unchanged (new
    mistakes traded for old ones). With a production model the rate must have
    been measured; ``None`` fails the check as "not measured". The measured rate
    is an estimate from the held-out sample, so where the evaluation supplies the
    flip counts (``flip_outcome``) a rate over ``max_negative_flip_rate`` fails
    only if it is significantly over: the exact one-sided binomial test of
    "the true rate is at most the limit" must give ``p < flip_rate_alpha``
    (default 0.01). Three flips in forty samples (7.5%, p = 0.32 against 5%) are
    noise; 45% flips, or 90 of 1,400 (6.4%, p = 0.01), are not.

``slice_coverage:<key>`` and ``slice_forgetting:<key>=<value>`` (``gate.slices``)
    The average can improve while one customer group (a language, a channel) gets
    worse. Each configured ``meta`` key splits the ``all`` set into groups (the
    ``slice_top_n`` most frequent values, the rest pooled as ``(other)``); a
    group's accuracy on the samples of labels production knows may drop by at most
    ``max_slice_forgetting``, and, as for labels, a drop over that fails only if the
    sign test on the group's discordant samples is significant — at
    ``slice_alpha`` divided by the number of groups checked, so that configuring
    more keys does not raise the false-alarm rate. Groups with fewer than
    ``slice_min_support`` old-label samples are reported, not checked. A key carried
    by fewer than ``slice_min_coverage`` of the samples fails ``slice_coverage``:
    the operator asked to protect groups the gate cannot see.

A poisoned candidate, trained on label-flipped data, typically raises no alarm on
the new labels but shows up twice: its old labels collapse (forgetting) and it
flips many of production's correct answers (negative flip rate). Both checks are
reported, because no check short-circuits the others.

All comparisons allow ``1e-9`` of floating-point rounding, so that a value exactly
at its threshold passes (``0.30 - 0.25`` is ``0.04999999999999999`` in binary).

Example
-------
>>> from daemon.training.gate import GateInput, GatePolicy, SetMetrics, decide
>>> def metrics(name, macro_f1, billing_f1):
...     return SetMetrics(name=name, n=200, accuracy=macro_f1, macro_f1=macro_f1,
...                       per_label_f1={"billing": billing_f1}, support={"billing": 50})
>>> first = decide(GateInput(candidate={"all": metrics("all", 0.71, 0.7)}, production=None,
...                          negative_flip_rate=None, old_labels=()), GatePolicy())
>>> first.summary
'promote: all 2 checks passed'
>>> decision = decide(
...     GateInput(candidate={"all": metrics("all", 0.80, 0.30)},
...               production={"all": metrics("all", 0.79, 0.90)},
...               negative_flip_rate=0.02, old_labels=["billing"]),
...     GatePolicy(),
... )
>>> decision.promote
False
>>> decision.summary
'reject: label_forgetting:billing failed'
>>> decision.failed[0].detail
"F1 of 'billing' on all (support 50): 0.300 vs production 0.900 (drop 0.600, allowed <= 0.250)"
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.config import GatePolicy

__all__ = [
    "ALL_SET",
    "AbstainOutcome",
    "OLD_LABELS_SET",
    "Check",
    "Decision",
    "GateInput",
    "GatePolicy",
    "PairedOutcome",
    "SetMetrics",
    "SliceGroup",
    "SliceOutcome",
    "binomial_tail_p",
    "decide",
    "sign_test_p",
]

#: The evaluation set over every held-out label seen so far; per-label forgetting reads it.
ALL_SET = "all"
#: The evaluation set restricted to labels production can predict.
OLD_LABELS_SET = "old_labels"

#: Slack for floating-point rounding in every threshold comparison.
_TOLERANCE = 1e-9


def _check_score(value: Any, what: str) -> float:
    """``value`` as a float in [0, 1], or a ValueError/TypeError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{what} is NaN")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{what} must be between 0 and 1, got {number}")
    return number


def _check_count(value: Any, what: str) -> int:
    """``value`` as a non-negative int, or a ValueError/TypeError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    count = int(value)
    if count < 0:
        raise ValueError(f"{what} must be >= 0, got {count}")
    return count


@dataclass(frozen=True)
class SetMetrics:
    """One model's scores on one held-out evaluation set.

    The mappings are copied into plain dicts on construction, so a caller changing
    its own dicts later cannot alter what was validated; the copies stay picklable
    and ``dataclasses.asdict`` turns the whole thing into JSON-ready data.

    Raises
    ------
    ValueError
        A score is NaN or outside [0, 1], or a count is negative.
    TypeError
        A score is not a number or a count is not an int.
    """

    name: str
    n: int
    accuracy: float
    macro_f1: float
    per_label_f1: Mapping[str, float]
    support: Mapping[str, int]

    def __post_init__(self) -> None:
        where = f"set {self.name!r}"
        object.__setattr__(self, "n", _check_count(self.n, f"{where}: n"))
        object.__setattr__(self, "accuracy", _check_score(self.accuracy, f"{where}: accuracy"))
        object.__setattr__(self, "macro_f1", _check_score(self.macro_f1, f"{where}: macro_f1"))
        f1 = {str(label): _check_score(v, f"{where}: F1 of {label!r}") for label, v in self.per_label_f1.items()}
        support = {str(label): _check_count(v, f"{where}: support of {label!r}") for label, v in self.support.items()}
        object.__setattr__(self, "per_label_f1", f1)
        object.__setattr__(self, "support", support)


@dataclass(frozen=True)
class PairedOutcome:
    """How one old label's held-out samples changed between production and candidate.

    ``lost``: samples production got right and the candidate gets wrong; ``gained``:
    the reverse; ``n``: the label's samples both models scored.

    Raises
    ------
    ValueError
        A count is negative, or ``lost + gained`` exceeds ``n``.
    TypeError
        A count is not an int.
    """

    n: int
    lost: int
    gained: int

    def __post_init__(self) -> None:
        for name in ("n", "lost", "gained"):
            object.__setattr__(self, name, _check_count(getattr(self, name), f"paired outcome: {name}"))
        if self.lost + self.gained > self.n:
            raise ValueError(f"paired outcome: lost + gained ({self.lost + self.gained}) exceeds n ({self.n})")


@dataclass(frozen=True)
class AbstainOutcome:
    """In-scope abstentions on the ``all`` set: the candidate's (cross-fitted, see
    ``learners.calibration``) and production's under its own recorded calibration
    (``production_abstained`` is ``None`` when production has none, or there is no production)."""

    candidate_abstained: int
    candidate_n: int
    production_abstained: int | None = None
    production_n: int = 0

    def __post_init__(self) -> None:
        _check_count(self.candidate_abstained, "abstain: candidate_abstained")
        _check_count(self.candidate_n, "abstain: candidate_n")
        _check_count(self.production_n, "abstain: production_n")
        if self.candidate_abstained > self.candidate_n:
            raise ValueError("abstain: candidate_abstained exceeds candidate_n")
        if self.production_abstained is not None:
            _check_count(self.production_abstained, "abstain: production_abstained")
            if self.production_abstained > self.production_n:
                raise ValueError("abstain: production_abstained exceeds production_n")

    @property
    def candidate_rate(self) -> float:
        return self.candidate_abstained / self.candidate_n if self.candidate_n else 0.0

    @property
    def production_rate(self) -> float | None:
        if self.production_abstained is None or not self.production_n:
            return None
        return self.production_abstained / self.production_n

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": {"abstained": self.candidate_abstained, "n": self.candidate_n,
                              "rate": round(self.candidate_rate, 6)},
                "production": None if self.production_rate is None else {
                    "abstained": self.production_abstained, "n": self.production_n,
                    "rate": round(self.production_rate, 6)}}


@dataclass(frozen=True)
class SliceGroup:
    """One group of a slice key (e.g. ``meta.language = de``) on the ``all`` set.

    ``n`` samples, of which each model answered ``*_correct`` right (``production_correct``
    is ``None`` without production); ``old_n`` of them are of labels production knows,
    and on those ``lost``/``gained`` are the paired changes the forgetting check reads.
    """

    value: str
    n: int
    candidate_correct: int
    production_correct: int | None = None
    old_n: int = 0
    lost: int = 0
    gained: int = 0

    def __post_init__(self) -> None:
        for name in ("n", "candidate_correct", "old_n", "lost", "gained"):
            object.__setattr__(self, name, _check_count(getattr(self, name), f"slice group {self.value!r}: {name}"))
        if self.candidate_correct > self.n or self.old_n > self.n or self.lost + self.gained > self.old_n:
            raise ValueError(f"slice group {self.value!r}: counts exceed its samples ({self})")
        if self.production_correct is not None:
            _check_count(self.production_correct, f"slice group {self.value!r}: production_correct")

    @property
    def candidate_accuracy(self) -> float:
        return self.candidate_correct / self.n if self.n else 0.0

    @property
    def production_accuracy(self) -> float | None:
        if self.production_correct is None or not self.n:
            return None
        return self.production_correct / self.n

    @property
    def old_drop(self) -> float:
        """Production's accuracy minus the candidate's on the group's old-label samples."""
        return (self.lost - self.gained) / self.old_n if self.old_n else 0.0

    def to_dict(self) -> dict[str, Any]:
        production = self.production_accuracy
        return {"n": self.n, "candidate_accuracy": round(self.candidate_accuracy, 6),
                "production_accuracy": None if production is None else round(production, 6),
                "old_n": self.old_n, "lost": self.lost, "gained": self.gained}


@dataclass(frozen=True)
class SliceOutcome:
    """One configured slice key: how many ``all`` samples carry it, and its groups."""

    key: str
    total: int
    covered: int
    groups: tuple[SliceGroup, ...] = ()

    def __post_init__(self) -> None:
        _check_count(self.total, f"slice {self.key!r}: total")
        _check_count(self.covered, f"slice {self.key!r}: covered")
        if self.covered > self.total:
            raise ValueError(f"slice {self.key!r}: covered ({self.covered}) exceeds total ({self.total})")
        object.__setattr__(self, "groups", tuple(self.groups))

    @property
    def coverage(self) -> float:
        return self.covered / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "covered": self.covered, "coverage": round(self.coverage, 6),
                "groups": {group.value: group.to_dict() for group in self.groups}}


def sign_test_p(lost: int, gained: int) -> float:
    """One-sided exact sign test: P(at least ``lost`` of the discordant samples are losses | no change).

    Under "the candidate is as good as production on this label" each discordant
    sample is a loss or a gain with probability 1/2.

    >>> sign_test_p(3, 0)
    0.125
    >>> round(sign_test_p(7, 0), 4)
    0.0078
    >>> sign_test_p(0, 0)
    1.0
    """
    if lost < 0 or gained < 0:
        raise ValueError(f"counts must be >= 0, got lost={lost}, gained={gained}")
    total = lost + gained
    if total == 0:
        return 1.0
    return sum(math.comb(total, k) for k in range(lost, total + 1)) / 2**total


def binomial_tail_p(successes: int, trials: int, rate: float) -> float:
    """One-sided exact binomial test: P(at least ``successes`` of ``trials`` | each with probability ``rate``).

    The gate's question "is the flip rate significantly above the limit?" with
    ``rate`` the limit: a small value means so many flips are unlikely at that rate.

    >>> round(binomial_tail_p(3, 40, 0.05), 3)
    0.323
    >>> binomial_tail_p(0, 40, 0.05)
    1.0
    >>> binomial_tail_p(1, 10, 0.0)
    0.0
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got successes={successes}, trials={trials}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    if successes == 0:
        return 1.0
    if rate == 0.0:
        return 0.0
    if rate == 1.0:
        return 1.0
    log_p, log_q = math.log(rate), math.log1p(-rate)
    log_terms = [math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1) + k * log_p
                 + (trials - k) * log_q for k in range(successes, trials + 1)]
    peak = max(log_terms)
    return min(1.0, math.exp(peak) * sum(math.exp(t - peak) for t in log_terms))


def _copied_sets(sets: Mapping[str, SetMetrics], side: str) -> Mapping[str, SetMetrics]:
    for key, metrics in sets.items():
        if not isinstance(metrics, SetMetrics):
            raise TypeError(f"{side}[{key!r}] must be a SetMetrics, got {type(metrics).__name__}")
        if metrics.name != key:
            raise ValueError(f"{side}[{key!r}] holds the metrics of set {metrics.name!r}")
    return dict(sets)


@dataclass(frozen=True)
class GateInput:
    """Everything the gate looks at: candidate and production scores on the same held-out sets.

    Parameters
    ----------
    candidate
        The candidate's metrics by set name (``"all"``, ``"recent"``, ``"old_labels"``,
        ``"new_labels"``); each key must equal its ``SetMetrics.name``.
    production
        Production's metrics on the same sets, or ``None`` when there is no
        production model yet.
    negative_flip_rate
        Share of the ``"all"`` set that production got right and the candidate gets
        wrong; ``None`` when there is no production model (or it was not measured,
        which fails the gate).
    old_labels
        The labels production can predict; kept as a tuple.
    label_outcomes
        Per old label, the paired outcomes of its samples in the ``all`` set; with
        them a per-label F1 drop must also be significant to fail (see
        ``label_forgetting`` above). ``None``: the F1 drop alone decides.
    flip_outcome
        The paired outcomes over the whole ``all`` set (``lost`` are the negative
        flips); with it a flip rate over the limit must also be significantly over
        to fail. ``None``: the point estimate alone decides.

    Raises
    ------
    ValueError
        A set is keyed under another name, ``negative_flip_rate`` is NaN or outside
        [0, 1], or it is given without a production model.
    TypeError
        A set is not a ``SetMetrics``, or ``old_labels`` is a single str.
    """

    candidate: Mapping[str, SetMetrics]
    production: Mapping[str, SetMetrics] | None
    negative_flip_rate: float | None
    old_labels: Sequence[str]
    label_outcomes: Mapping[str, PairedOutcome] | None = None
    flip_outcome: PairedOutcome | None = None
    abstain: AbstainOutcome | None = None
    #: Per configured ``gate.slices`` key, its groups on the ``all`` set.
    slices: Sequence[SliceOutcome] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidate", _copied_sets(self.candidate, "candidate"))
        for outcome in self.slices:
            if not isinstance(outcome, SliceOutcome):
                raise TypeError(f"slices must hold SliceOutcome, got {type(outcome).__name__}")
        object.__setattr__(self, "slices", tuple(self.slices))
        if self.production is not None:
            object.__setattr__(self, "production", _copied_sets(self.production, "production"))
        if self.negative_flip_rate is not None:
            if self.production is None:
                raise ValueError("negative_flip_rate is given but there is no production model to compare with")
            object.__setattr__(
                self, "negative_flip_rate", _check_score(self.negative_flip_rate, "negative_flip_rate")
            )
        if isinstance(self.old_labels, str):
            raise TypeError("old_labels must be a sequence of label names, not a str")
        object.__setattr__(self, "old_labels", tuple(str(label) for label in self.old_labels))
        if self.label_outcomes is not None:
            for label, outcome in self.label_outcomes.items():
                if not isinstance(outcome, PairedOutcome):
                    raise TypeError(
                        f"label_outcomes[{label!r}] must be a PairedOutcome, got {type(outcome).__name__}"
                    )
            object.__setattr__(self, "label_outcomes", dict(self.label_outcomes))
        if self.flip_outcome is not None:
            if not isinstance(self.flip_outcome, PairedOutcome):
                raise TypeError(f"flip_outcome must be a PairedOutcome, got {type(self.flip_outcome).__name__}")
            if self.production is None:
                raise ValueError("flip_outcome is given but there is no production model to compare with")


@dataclass(frozen=True)
class Check:
    """One rule's outcome.

    ``name`` is a stable machine-readable id (``eval_samples``, ``min_absolute``,
    ``primary_improvement``, ``old_label_forgetting``, ``label_forgetting:<label>``,
    ``negative_flip_rate``); ``value`` is the measured number and ``threshold`` the
    bound it was held to (``None`` where there was nothing to measure); ``detail``
    is a sentence with the numbers for people.
    """

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Decision:
    """The gate's verdict: promote or not, every check made, and a one-line summary."""

    promote: bool
    checks: tuple[Check, ...]
    summary: str

    @property
    def failed(self) -> tuple[Check, ...]:
        """The checks that did not pass, in check order."""
        return tuple(check for check in self.checks if not check.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, for storage and the API; :meth:`from_dict` reads it back."""
        return {
            "promote": self.promote,
            "summary": self.summary,
            "checks": [check.to_dict() for check in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a decision stored with :meth:`to_dict`.

        Raises
        ------
        KeyError
            A key written by :meth:`to_dict` is missing.
        """
        checks = tuple(
            Check(
                name=item["name"],
                passed=item["passed"],
                value=item["value"],
                threshold=item["threshold"],
                detail=item["detail"],
            )
            for item in data["checks"]
        )
        return cls(promote=data["promote"], checks=checks, summary=data["summary"])


def _require(sets: Mapping[str, SetMetrics], name: str, side: str, purpose: str) -> SetMetrics:
    try:
        return sets[name]
    except KeyError:
        raise ValueError(
            f"{side} has no evaluation set {name!r} ({purpose}); it has: {sorted(sets)}"
        ) from None


def _at_most(value: float, threshold: float) -> bool:
    return value <= threshold + _TOLERANCE


def _at_least(value: float, threshold: float) -> bool:
    return value >= threshold - _TOLERANCE


def _eval_samples(candidate: SetMetrics, policy: GatePolicy) -> Check:
    return Check(
        name="eval_samples",
        passed=candidate.n >= policy.min_eval_samples,
        value=float(candidate.n),
        threshold=float(policy.min_eval_samples),
        detail=f"{candidate.name} has {candidate.n} held-out samples (need >= {policy.min_eval_samples})",
    )


def _min_absolute(candidate: SetMetrics, policy: GatePolicy) -> Check:
    metric = policy.primary_metric
    score = getattr(candidate, metric)
    return Check(
        name="min_absolute",
        passed=_at_least(score, policy.min_absolute),
        value=score,
        threshold=policy.min_absolute,
        detail=(
            f"{metric} on {candidate.name}: {score:.3f} (need >= {policy.min_absolute:.3f};"
            " first model, no production to compare with)"
        ),
    )


def _primary_improvement(candidate: SetMetrics, production: SetMetrics, policy: GatePolicy) -> Check:
    metric = policy.primary_metric
    ours, theirs = getattr(candidate, metric), getattr(production, metric)
    delta = ours - theirs
    return Check(
        name="primary_improvement",
        passed=_at_least(delta, policy.min_improvement),
        value=delta,
        threshold=policy.min_improvement,
        detail=(
            f"{metric} on {candidate.name}: {ours:.3f} vs production {theirs:.3f}"
            f" ({delta:+.3f}, need >= {policy.min_improvement:+.3f})"
        ),
    )


def _old_label_forgetting(
    candidate: Mapping[str, SetMetrics], production: Mapping[str, SetMetrics], policy: GatePolicy
) -> Check:
    metric = policy.primary_metric
    ours = candidate.get(OLD_LABELS_SET)
    if ours is None or ours.n == 0:
        reason = "no old_labels set" if ours is None else "the old_labels set is empty"
        return Check(
            name="old_label_forgetting",
            passed=True,
            value=None,
            threshold=policy.max_forgetting,
            detail=f"{reason}: no old labels to forget",
        )
    theirs = _require(production, OLD_LABELS_SET, "production", "to measure forgetting")
    before, after = getattr(theirs, metric), getattr(ours, metric)
    drop = before - after
    return Check(
        name="old_label_forgetting",
        passed=_at_most(drop, policy.max_forgetting),
        value=drop,
        threshold=policy.max_forgetting,
        detail=(
            f"{metric} on old_labels: {after:.3f} vs production {before:.3f}"
            f" (drop {drop:.3f}, allowed <= {policy.max_forgetting:.3f})"
        ),
    )


def _label_forgetting(
    candidate: Mapping[str, SetMetrics], production: Mapping[str, SetMetrics], old_labels: Sequence[str],
    outcomes: Mapping[str, PairedOutcome] | None, policy: GatePolicy,
) -> list[Check]:
    if not old_labels:
        return []
    ours = _require(candidate, ALL_SET, "candidate", "for per-label forgetting")
    theirs = _require(production, ALL_SET, "production", "for per-label forgetting")
    checks = []
    for label in sorted(set(old_labels)):
        support = ours.support.get(label, 0)
        if support < policy.min_label_support:
            continue
        if label not in ours.per_label_f1:
            raise ValueError(f"candidate set 'all' has support {support} for {label!r} but no F1 for it")
        if label not in theirs.per_label_f1:
            raise ValueError(f"production set 'all' has no F1 for old label {label!r}")
        before, after = theirs.per_label_f1[label], ours.per_label_f1[label]
        drop = before - after
        passed = _at_most(drop, policy.max_label_forgetting)
        detail = (
            f"F1 of {label!r} on all (support {support}): {after:.3f} vs production {before:.3f}"
            f" (drop {drop:.3f}, allowed <= {policy.max_label_forgetting:.3f})"
        )
        outcome = None if outcomes is None else outcomes.get(label)
        if outcome is not None:
            p_value = sign_test_p(outcome.lost, outcome.gained)
            significant = p_value < policy.label_forgetting_alpha
            passed = passed or not significant
            detail += (
                f"; {outcome.lost} of {outcome.n} answers lost, {outcome.gained} gained,"
                f" sign test p={p_value:.3g} ({'significant' if significant else 'not significant'}"
                f" at {policy.label_forgetting_alpha:g})"
            )
        checks.append(
            Check(
                name=f"label_forgetting:{label}",
                passed=passed,
                value=drop,
                threshold=policy.max_label_forgetting,
                detail=detail,
            )
        )
    return checks


def _negative_flip_rate(rate: float | None, outcome: PairedOutcome | None, policy: GatePolicy) -> Check:
    limit = policy.max_negative_flip_rate
    if rate is None:
        return Check(
            name="negative_flip_rate",
            passed=False,
            value=None,
            threshold=limit,
            detail=f"negative flip rate not measured (need <= {limit:.3f} against production)",
        )
    passed = _at_most(rate, limit)
    detail = f"negative flip rate on all: {rate:.3f} (allowed <= {limit:.3f})"
    if outcome is not None and not passed:
        passed, test = _beyond_sampling_error(outcome.lost, outcome.n, limit, policy.flip_rate_alpha, f"{limit:g}")
        detail += f"; {outcome.lost} of {outcome.n} answers lost, {test}"
    return Check(name="negative_flip_rate", passed=passed, value=rate, threshold=limit, detail=detail)


def _beyond_sampling_error(hits: int, n: int, limit: float, alpha: float, limit_text: str) -> tuple[bool, str]:
    """A rate measured over its limit fails only if an exact binomial test says the true rate is too.

    Returns whether the check passes after all and the sentence saying why: on a few hundred
    samples a rate a little over its limit is often sampling noise, and noise must not veto
    a candidate.
    """
    p_value = binomial_tail_p(hits, n, limit)
    significant = p_value < alpha
    verdict = "significant" if significant else "not significant"
    return not significant, f"binomial test of rate <= {limit_text}: p={p_value:.3g} ({verdict} at {alpha:g})"


def _abstain_rate(outcome: AbstainOutcome, policy: GatePolicy) -> Check:
    """The candidate must not abstain on much more in-scope traffic than production does."""
    rate, reference = outcome.candidate_rate, outcome.production_rate
    measured = f"candidate abstains on {outcome.candidate_abstained} of {outcome.candidate_n} in-scope samples ({rate:.3f})"
    if reference is None:
        return Check(name="abstain_rate", passed=True, value=rate, threshold=None,
                     detail=f"{measured}; no production calibration to compare with")
    limit = min(1.0, reference + policy.max_abstain_increase)
    passed = _at_most(rate, limit)
    detail = f"{measured}, production {reference:.3f} (allowed <= {limit:.3f})"
    if not passed:
        passed, test = _beyond_sampling_error(outcome.candidate_abstained, outcome.candidate_n, limit,
                                              policy.abstain_alpha, f"{limit:.3f}")
        detail += f"; {test}"
    return Check(name="abstain_rate", passed=passed, value=rate, threshold=limit, detail=detail)


def _slice_coverage(outcome: SliceOutcome, policy: GatePolicy) -> Check:
    name = outcome.key.removeprefix("meta.")
    if outcome.total == 0:
        return Check(name=f"slice_coverage:{outcome.key}", passed=True, value=None,
                     threshold=policy.slice_min_coverage, detail=f"{outcome.key}: no held-out samples to group")
    passed = _at_least(outcome.coverage, policy.slice_min_coverage)
    detail = (f"{outcome.key} present on {outcome.covered} of {outcome.total} held-out samples "
              f"({outcome.coverage:.0%}, need >= {policy.slice_min_coverage:.0%})")
    if not passed:
        detail += (f": records lack meta key {name!r}; send it in their 'meta' or remove {outcome.key!r} "
                   "from gate.slices")
    return Check(name=f"slice_coverage:{outcome.key}", passed=passed, value=outcome.coverage,
                 threshold=policy.slice_min_coverage, detail=detail)


def _slice_forgetting(slices: Sequence[SliceOutcome], policy: GatePolicy) -> list[Check]:
    checked = [(outcome.key, group) for outcome in slices for group in outcome.groups
               if group.old_n >= policy.slice_min_support]
    if not checked:
        return []
    alpha = policy.slice_alpha / len(checked)
    checks = []
    for key, group in checked:
        drop = group.old_drop
        p_value = sign_test_p(group.lost, group.gained)
        significant = p_value < alpha
        passed = _at_most(drop, policy.max_slice_forgetting) or not significant
        checks.append(Check(
            name=f"slice_forgetting:{key}={group.value}", passed=passed, value=drop,
            threshold=policy.max_slice_forgetting,
            detail=(f"accuracy of {key}={group.value!r} on old labels (support {group.old_n}): drop {drop:.3f} "
                    f"(allowed <= {policy.max_slice_forgetting:.3f}); {group.lost} answers lost, {group.gained} "
                    f"gained, sign test p={p_value:.3g} ({'significant' if significant else 'not significant'} at "
                    f"{policy.slice_alpha:g}/{len(checked)} groups)"),
        ))
    return checks


def _summary(checks: Sequence[Check]) -> str:
    failed = [check.name for check in checks if not check.passed]
    if not failed:
        return f"promote: all {len(checks)} checks passed"
    return f"reject: {', '.join(failed)} failed"


def decide(gate_input: GateInput, policy: GatePolicy) -> Decision:
    """Decide whether the candidate in ``gate_input`` may replace production.

    Every check is evaluated and returned, in a stable order: ``eval_samples``
    then ``min_absolute`` for a first model; otherwise ``eval_samples``,
    ``primary_improvement``, ``old_label_forgetting``, the ``label_forgetting:<label>``
    checks sorted by label, and ``negative_flip_rate``; then ``slice_coverage:<key>`` per
    configured slice and (with production) the ``slice_forgetting:<key>=<value>`` checks;
    last ``abstain_rate`` when the input
    carries abstentions (a first model's passes, recording the rate). The candidate is promoted
    iff all of them pass. Inputs are not modified.

    Raises
    ------
    ValueError
        The candidate or production lacks ``policy.primary_set``; production lacks
        ``old_labels`` while the candidate has a non-empty one; either lacks ``all``
        while there are old labels; or an old label with enough support has no F1.
        (NaN and out-of-range scores are refused when building the inputs.)
    """
    primary = _require(gate_input.candidate, policy.primary_set, "candidate", "the policy's primary_set")
    checks = [_eval_samples(primary, policy)]
    production = gate_input.production
    if production is None:
        checks.append(_min_absolute(primary, policy))
    else:
        reference = _require(production, policy.primary_set, "production", "the policy's primary_set")
        checks.append(_primary_improvement(primary, reference, policy))
        checks.append(_old_label_forgetting(gate_input.candidate, production, policy))
        checks.extend(_label_forgetting(gate_input.candidate, production, gate_input.old_labels,
                                        gate_input.label_outcomes, policy))
        checks.append(_negative_flip_rate(gate_input.negative_flip_rate, gate_input.flip_outcome, policy))
    checks.extend(_slice_coverage(outcome, policy) for outcome in gate_input.slices)
    if production is not None:
        checks.extend(_slice_forgetting(gate_input.slices, policy))
    if gate_input.abstain is not None:
        checks.append(_abstain_rate(gate_input.abstain, policy))
    return Decision(promote=all(check.passed for check in checks), checks=tuple(checks), summary=_summary(checks))
