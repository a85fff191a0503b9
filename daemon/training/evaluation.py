"""Evaluation sets from held-out samples, and candidate-versus-production metrics on them.

Both models are scored on exactly the same samples — held-out ones only, which no
model in the lineage ever trained on:

- ``all``: every held-out sample of a label the candidate knows;
- ``recent``: the newest ``recent_window`` samples of ``all`` (is the model keeping up?);
- ``old_labels``: samples of labels production already knew (has the candidate forgotten?);
- ``new_labels``: samples of labels production did not know (has it learned them?).

Each model predicts ``all`` once; the other sets are slices of those predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.training.gate import AbstainOutcome, GateInput, PairedOutcome, SetMetrics, SliceOutcome
from daemon.training.slices import slice_outcomes
from learners.calibration import Calibration, auroc, calibrated, cross_fitted_abstain_rate, fit_calibration
from learners.evaluate import evaluate, negative_flip_rate
from learners.inference import predict
from learners.model import LoadedClassifier
from storage.registry import EvaluationRow
from storage.samples import StoredExample

__all__ = ["EVAL_SETS", "EvaluationOutcome", "build_sets", "evaluate_models", "paired_outcomes"]

EVAL_SETS = ("all", "recent", "old_labels", "new_labels")


@dataclass(frozen=True)
class EvaluationOutcome:
    """Metrics per set for the candidate and (if any) production, plus the flip rate."""

    candidate: dict[str, SetMetrics]
    production: dict[str, SetMetrics] | None
    negative_flip_rate: float | None
    old_labels: list[str]
    new_labels: list[str]
    #: Per old label, how its ``all`` samples changed from production to candidate.
    label_outcomes: dict[str, PairedOutcome] | None = None
    #: Over the whole ``all`` set: samples lost (the negative flips) and gained.
    flip_outcome: PairedOutcome | None = None
    #: The candidate's temperature and abstain threshold, fitted on the ``all`` set
    #: (and held-out out-of-scope samples); ``None`` when abstention is off.
    calibration: Calibration | None = None
    #: In-scope abstentions of both models on ``all`` (the candidate's cross-fitted).
    abstain: AbstainOutcome | None = None
    #: Out-of-scope held-out samples: how many, the share the candidate abstains on, and
    #: the AUROC of its calibrated confidence, in-scope against out-of-scope.
    out_of_scope: dict[str, Any] | None = None
    #: Per ``gate.slices`` key, both models by group on the ``all`` set.
    slices: tuple[SliceOutcome, ...] = ()

    def gate_input(self) -> GateInput:
        return GateInput(candidate=self.candidate, production=self.production,
                         negative_flip_rate=self.negative_flip_rate, old_labels=self.old_labels,
                         label_outcomes=self.label_outcomes, flip_outcome=self.flip_outcome,
                         abstain=self.abstain, slices=self.slices)

    def slice_rows(self, role: str) -> list[EvaluationRow]:
        """Storage rows of one model's (``candidate`` or ``production``) accuracy by group:
        set ``slice:<name>``, the group value in the label column."""
        rows = []
        for outcome in self.slices:
            for group in outcome.groups:
                accuracy = group.candidate_accuracy if role == "candidate" else group.production_accuracy
                if accuracy is not None:
                    rows.append(EvaluationRow(eval_set="slice:" + outcome.key.removeprefix("meta."),
                                              metric="accuracy", value=accuracy, n=group.n, label=group.value))
        return rows

    @staticmethod
    def rows(metrics: dict[str, SetMetrics]) -> list[EvaluationRow]:
        """Storage rows: set-level accuracy and macro-F1, and per-label F1."""
        rows = []
        for name, m in metrics.items():
            rows.append(EvaluationRow(eval_set=name, metric="accuracy", value=m.accuracy, n=m.n))
            rows.append(EvaluationRow(eval_set=name, metric="macro_f1", value=m.macro_f1, n=m.n))
            for label, f1 in m.per_label_f1.items():
                rows.append(EvaluationRow(eval_set=name, metric="f1", value=f1, n=m.support.get(label, 0),
                                          label=label))
        return rows

    def summary(self) -> dict[str, Any]:
        """Compact JSON for the manifest, the version record and the promotion event."""

        def sets(metrics: dict[str, SetMetrics] | None) -> dict[str, Any] | None:
            if metrics is None:
                return None
            return {name: {"n": m.n, "accuracy": round(m.accuracy, 6), "macro_f1": round(m.macro_f1, 6)}
                    for name, m in metrics.items()}

        summary: dict[str, Any] = {
            "candidate": sets(self.candidate),
            "production": sets(self.production),
            "negative_flip_rate": self.negative_flip_rate,
            "old_labels": len(self.old_labels),
            "new_labels": self.new_labels,
        }
        if self.calibration is not None:
            summary["calibration"] = self.calibration.to_dict()
        if self.abstain is not None:
            summary["abstain"] = self.abstain.to_dict()
        if self.out_of_scope is not None:
            summary["out_of_scope"] = self.out_of_scope
        if self.slices:
            summary["slices"] = {outcome.key: outcome.to_dict() for outcome in self.slices}
        return summary


def build_sets(
    heldout: Sequence[StoredExample],
    *,
    candidate_labels: Sequence[str],
    production_labels: Sequence[str],
    recent_window: int,
) -> dict[str, list[StoredExample]]:
    """Split held-out samples into the evaluation sets (each oldest first)."""
    known = set(candidate_labels)
    old = set(production_labels)
    everything = [example for example in heldout if example.label in known]
    return {
        "all": everything,
        "recent": everything[-recent_window:] if recent_window > 0 else [],
        "old_labels": [e for e in everything if e.label in old],
        "new_labels": [e for e in everything if e.label not in old],
    }


def _set_metrics(name: str, examples: list[StoredExample], predicted: dict[int, str],
                 index: dict[str, int]) -> SetMetrics:
    if not examples:
        return SetMetrics(name=name, n=0, accuracy=0.0, macro_f1=0.0, per_label_f1={}, support={})
    y_true = [index[e.label] for e in examples]
    # A prediction of a label the candidate does not know gets an id no true label has.
    y_pred = [index.get(predicted[e.sample_id], len(index)) for e in examples]
    report = evaluate(y_true, y_pred)
    names = {i: label for label, i in index.items()}
    return SetMetrics(
        name=name, n=report.n, accuracy=report.accuracy, macro_f1=report.macro_f1,
        per_label_f1={names[i]: f1 for i, f1 in report.per_label_f1.items()},
        support={names[i]: s for i, s in report.support.items()},
    )


def paired_outcomes(examples: Sequence[StoredExample], production: dict[int, str],
                    candidate: dict[int, str], *, labels: Sequence[str]) -> dict[str, PairedOutcome]:
    """Per label in ``labels``: its samples, those production got right and the candidate
    wrong (lost), and the reverse (gained) — the pairs the gate's sign test reads."""
    wanted = set(labels)
    counts: dict[str, list[int]] = {}
    for example in examples:
        if example.label not in wanted:
            continue
        n_lost_gained = counts.setdefault(example.label, [0, 0, 0])
        was_right = production[example.sample_id] == example.label
        is_right = candidate[example.sample_id] == example.label
        n_lost_gained[0] += 1
        n_lost_gained[1] += was_right and not is_right
        n_lost_gained[2] += is_right and not was_right
    return {label: PairedOutcome(n=n, lost=lost, gained=gained) for label, (n, lost, gained) in sorted(counts.items())}


def _predicted(model: LoadedClassifier, examples: Sequence[StoredExample],
               batch_size: int) -> tuple[dict[int, str], list[list[float]]]:
    """Predicted label by sample id, and the logits in ``examples`` order."""
    if not examples:
        return {}, []
    result = predict(model, [e.text for e in examples], batch_size=batch_size)
    return {e.sample_id: label for e, label in zip(examples, result.predicted_labels, strict=True)}, result.logits


def _calibrate(
    candidate: LoadedClassifier, production: LoadedClassifier | None, examples: list[StoredExample],
    oos: Sequence[StoredExample], cand_logits: list[list[float]], prod_logits: list[list[float]], *,
    in_scope_abstain: float, production_calibration: Calibration | None, batch_size: int,
) -> tuple[Calibration, AbstainOutcome, dict[str, Any] | None]:
    index = {label: i for i, label in enumerate(candidate.model.labels)}
    y_true = [index[e.label] for e in examples]
    _, oos_logits = _predicted(candidate, oos, batch_size)
    calibration = fit_calibration(cand_logits, y_true, in_scope_abstain=in_scope_abstain, oos_logits=oos_logits)
    abstained, scored = cross_fitted_abstain_rate(cand_logits, y_true, in_scope_abstain=in_scope_abstain,
                                                  oos_logits=oos_logits)
    production_abstained = None
    if production is not None and production_calibration is not None and prod_logits:
        production_abstained = sum(production_calibration.abstains(row) for row in prod_logits)
    outcome = AbstainOutcome(candidate_abstained=abstained, candidate_n=scored,
                             production_abstained=production_abstained,
                             production_n=len(prod_logits) if production_abstained is not None else 0)
    out_of_scope = None
    if oos_logits:
        oos_scores = calibrated(oos_logits, calibration.temperature)
        area = auroc(calibrated(cand_logits, calibration.temperature), oos_scores)
        out_of_scope = {"n": len(oos_logits),
                        "abstain_rate": round(sum(s < calibration.threshold for s in oos_scores) / len(oos_scores), 6),
                        "auroc": None if area is None else round(area, 6)}
    return calibration, outcome, out_of_scope


def evaluate_models(
    candidate: LoadedClassifier,
    production: LoadedClassifier | None,
    heldout: Sequence[StoredExample],
    *,
    recent_window: int = 500,
    batch_size: int = 64,
    in_scope_abstain: float = 0.0,
    oos_label: str | None = None,
    production_calibration: Calibration | None = None,
    slices: Sequence[str] = (),
    slice_top_n: int = 5,
) -> EvaluationOutcome:
    """Score the candidate and production on the same held-out sets.

    ``slices`` (``meta.<key>``, the examples carrying their ``meta``) are also scored
    group by group on the ``all`` set (see ``daemon.training.slices``).

    With ``in_scope_abstain`` > 0 the candidate's calibration is fitted (held-out samples
    labelled ``oos_label`` are the out-of-scope examples) and both models' in-scope
    abstentions are counted, production's under ``production_calibration``.
    """
    production_labels = list(production.model.labels) if production is not None else []
    sets = build_sets(heldout, candidate_labels=candidate.model.labels, production_labels=production_labels,
                      recent_window=recent_window)
    index = {label: i for i, label in enumerate(candidate.model.labels)}
    cand_pred, cand_logits = _predicted(candidate, sets["all"], batch_size)
    cand = {name: _set_metrics(name, examples, cand_pred, index) for name, examples in sets.items()}
    prod = None
    flip_rate = None
    outcomes = None
    flips = None
    prod_logits: list[list[float]] = []
    prod_pred: dict[int, str] | None = None
    if production is not None:
        prod_pred, prod_logits = _predicted(production, sets["all"], batch_size)
        prod = {name: _set_metrics(name, examples, prod_pred, index) for name, examples in sets.items()}
        if sets["all"]:
            y_true = [index[e.label] for e in sets["all"]]
            old = [index.get(prod_pred[e.sample_id], len(index)) for e in sets["all"]]
            new = [index.get(cand_pred[e.sample_id], len(index)) for e in sets["all"]]
            flip_rate = negative_flip_rate(y_true, old, new)
            # The same pairs over every label: lost are the negative flips the rate counts.
            every = paired_outcomes(sets["all"], prod_pred, cand_pred, labels=candidate.model.labels).values()
            flips = PairedOutcome(n=sum(o.n for o in every), lost=sum(o.lost for o in every),
                                  gained=sum(o.gained for o in every))
        outcomes = paired_outcomes(sets["all"], prod_pred, cand_pred, labels=production_labels)
    new_labels = sorted(set(candidate.model.labels) - set(production_labels))
    calibration = abstain = out_of_scope = None
    if in_scope_abstain > 0 and sets["all"]:
        oos = [e for e in heldout if oos_label is not None and e.label == oos_label]
        calibration, abstain, out_of_scope = _calibrate(
            candidate, production, sets["all"], oos, cand_logits, prod_logits, in_scope_abstain=in_scope_abstain,
            production_calibration=production_calibration, batch_size=batch_size)
    grouped = slice_outcomes(sets["all"], slices, top_n=slice_top_n, candidate=cand_pred, production=prod_pred,
                             old_labels=production_labels)
    return EvaluationOutcome(candidate=cand, production=prod, negative_flip_rate=flip_rate,
                             old_labels=sorted(production_labels), new_labels=new_labels,
                             label_outcomes=outcomes, flip_outcome=flips, calibration=calibration,
                             abstain=abstain, out_of_scope=out_of_scope, slices=tuple(grouped))
