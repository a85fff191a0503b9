"""Evaluation metrics over integer label ids, for held-out sets and the promotion gate.

The gate (DESIGN.md section 3) compares a candidate with production on the same
held-out samples: macro-F1 over the held-out labels, how far each old label's
score fell, and how many samples production got right that the candidate now gets
wrong. Those numbers are computed here from label ids alone, so that they can be
tested exactly and reused by every evaluation set (all labels, recent window,
old/new slices); running a model over the texts happens elsewhere.

Conventions every function shares:

- Label ids are non-negative integers; ``y_true`` and each prediction array are
  one-dimensional and of the same, non-zero length.
- F1 for a label is ``2*tp / (2*tp + fp + fn)``, counted over all samples. A label
  with no true and no predicted samples has no defined F1 and scores ``0.0``
  (scikit-learn's ``zero_division=0``); the default label set, the labels present
  in ``y_true``, never contains such a label.
- Scores are plain Python ``float``/``int`` so that results serialise as JSON.

>>> y_true = [0, 0, 1, 1, 2]
>>> old = [0, 0, 1, 2, 2]
>>> new = [0, 1, 1, 1, 2]
>>> accuracy(y_true, new)
0.8
>>> {label: round(f1, 3) for label, f1 in per_label_f1(y_true, new).items()}
{0: 0.667, 1: 0.8, 2: 1.0}
>>> negative_flip_rate(y_true, old, new)  # sample 1: old right, new wrong
0.2
>>> drops = label_drops(per_label_f1(y_true, old), per_label_f1(y_true, new), labels=[0, 1])
>>> {label: round(drop, 3) for label, drop in drops.items()}
{0: 0.333, 1: -0.133}
>>> round(forgetting(per_label_f1(y_true, old), per_label_f1(y_true, new), labels=[0, 1]), 3)
0.167
>>> evaluate(y_true, new).to_dict()["support"]
{'0': 2, '1': 2, '2': 1}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "EvaluationReport",
    "accuracy",
    "confusion_counts",
    "evaluate",
    "forgetting",
    "label_drops",
    "macro_f1",
    "negative_flip_rate",
    "per_label_f1",
]

logger = logging.getLogger(__name__)

_EMPTY_MESSAGE = "cannot evaluate an empty set"


def _as_label_ids(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array of non-negative label ids, or a ValueError/TypeError naming ``name``."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        # ``np.asarray([])`` is float64; an empty input is judged by the caller, not by its dtype.
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer label ids, got dtype {array.dtype}")
    smallest = int(array.min())
    if smallest < 0:
        raise ValueError(f"{name} holds a negative label id: {smallest}")
    return array.astype(np.int64, copy=False)


def _paired(y_true: Any, **predictions: Any) -> tuple[np.ndarray, ...]:
    """Validate ``y_true`` and each named prediction array against it; return them as arrays."""
    truth = _as_label_ids(y_true, "y_true")
    arrays = [truth]
    for name, values in predictions.items():
        array = _as_label_ids(values, name)
        if len(array) != len(truth):
            raise ValueError(f"y_true and {name} have different lengths: {len(truth)} != {len(array)}")
        arrays.append(array)
    if len(truth) == 0:
        raise ValueError(_EMPTY_MESSAGE)
    return tuple(arrays)


def _label_set(labels: Iterable[int] | None, y_true: np.ndarray) -> np.ndarray:
    """The labels to score: as given (order kept), or the sorted ids present in ``y_true``."""
    if labels is None:
        return np.unique(y_true)
    chosen = _as_label_ids(list(labels), "labels")
    if len(chosen) == 0:
        raise ValueError("labels must not be empty")
    unique, counts = np.unique(chosen, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"labels holds a duplicate id: {int(unique[counts > 1][0])}")
    return chosen


def _per_label_counts(
    truth: np.ndarray, pred: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, true count (support) and predicted count for each of ``labels``.

    Ids are compacted through ``np.unique`` first so that a large id does not size the counts.
    """
    ids = np.unique(np.concatenate([truth, pred, labels]))
    t = np.searchsorted(ids, truth)
    p = np.searchsorted(ids, pred)
    where = np.searchsorted(ids, labels)
    tp = np.bincount(t[t == p], minlength=len(ids))[where]
    true_count = np.bincount(t, minlength=len(ids))[where]
    pred_count = np.bincount(p, minlength=len(ids))[where]
    return tp, true_count, pred_count


def _f1(tp: np.ndarray, true_count: np.ndarray, pred_count: np.ndarray) -> np.ndarray:
    """``2tp / (2tp + fp + fn)``, which is ``2tp / (true + predicted)``; 0.0 where both are zero."""
    denominator = true_count + pred_count
    return np.divide(2.0 * tp, denominator, out=np.zeros(len(tp), dtype=np.float64), where=denominator > 0)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of samples whose predicted label id equals the true one.

    Raises
    ------
    ValueError
        If the inputs are not 1-D, differ in length, are empty or hold a negative id.
    TypeError
        If an input does not hold integers.
    """
    truth, pred = _paired(y_true, y_pred=y_pred)
    return float(np.mean(truth == pred))


def per_label_f1(y_true: Any, y_pred: Any, labels: Iterable[int] | None = None) -> dict[int, float]:
    """F1 of each label, one-vs-rest over all samples.

    Per-label scores are what the gate compares slice by slice: a label can
    collapse while accuracy barely moves.

    Parameters
    ----------
    labels
        Label ids to score, in the order the result should have; default the
        sorted ids present in ``y_true``. A label predicted but never true scores
        0.0 (all its predictions are false positives), as does a label that is
        true but never predicted; a label with neither true nor predicted samples
        also scores 0.0, since there is no evidence for it.

    Raises
    ------
    ValueError
        On bad ``y_true``/``y_pred`` (see :func:`accuracy`), or if ``labels`` is
        empty, holds a duplicate or a negative id.
    """
    truth, pred = _paired(y_true, y_pred=y_pred)
    chosen = _label_set(labels, truth)
    scores = _f1(*_per_label_counts(truth, pred, chosen))
    return {int(label): float(score) for label, score in zip(chosen, scores, strict=True)}


def macro_f1(y_true: Any, y_pred: Any, labels: Iterable[int] | None = None) -> float:
    """Unweighted mean of :func:`per_label_f1` over ``labels``.

    Each label counts once whatever its support, so a rare or newly added label
    weighs as much as a common one. The default, the labels present in
    ``y_true``, is "macro-F1 over the held-out labels"; pass ``labels`` to
    compare two models over the same set (a label in ``labels`` absent from both
    arrays contributes 0.0 and lowers both models alike).

    Raises
    ------
    ValueError
        As :func:`per_label_f1`.
    """
    scores = per_label_f1(y_true, y_pred, labels)
    return float(np.mean(list(scores.values())))


def confusion_counts(y_true: Any, y_pred: Any) -> dict[tuple[int, int], int]:
    """Sparse confusion matrix: ``{(true_id, predicted_id): count}`` for non-zero cells, sorted.

    Sparse because the label space only grows and most cells stay empty. Tuple
    keys are not JSON; :meth:`EvaluationReport.to_dict` writes the same cells as
    ``[true_id, predicted_id, count]`` triples.

    Raises
    ------
    ValueError
        As :func:`accuracy`.
    """
    truth, pred = _paired(y_true, y_pred=y_pred)
    cells, counts = np.unique(np.stack([truth, pred], axis=1), axis=0, return_counts=True)
    return {(int(t), int(p)): int(c) for (t, p), c in zip(cells, counts, strict=True)}


def negative_flip_rate(y_true: Any, old_pred: Any, new_pred: Any) -> float:
    """Fraction of all samples that the old model got right and the new model gets wrong.

    This is the negative flip rate of Yan et al. (2021), "Positive-Congruent
    Training": the denominator is the number of samples ``n``, not the number the
    old model got right, so the rate is comparable across models and bounded by
    the old model's accuracy. A promotion that raises accuracy can still break
    predictions users relied on; this counts exactly those.

    Raises
    ------
    ValueError
        As :func:`accuracy`, naming ``old_pred`` or ``new_pred``.
    """
    truth, old, new = _paired(y_true, old_pred=old_pred, new_pred=new_pred)
    return float(np.mean((old == truth) & (new != truth)))


def label_drops(
    old_scores: Mapping[int, float], new_scores: Mapping[int, float], labels: Iterable[int]
) -> dict[int, float]:
    """Signed drop of each label's score, ``old - new``: positive means the new model got worse.

    Takes per-label scores (usually :func:`per_label_f1` of production and of the
    candidate on the same held-out set) so that the gate can name the label that
    forgot most: reject when ``max(label_drops(...).values()) > max_forgetting``.
    Improvements are kept as negative values rather than clipped, so the result
    also shows what got better.

    Parameters
    ----------
    labels
        The label ids to compare, normally the old labels (those production knew).

    Raises
    ------
    ValueError
        If ``labels`` is empty or either mapping lacks a score for one of them.
    """
    chosen = list(labels)
    if not chosen:
        raise ValueError("labels must not be empty")
    drops = {}
    for label in chosen:
        for name, scores in (("old_scores", old_scores), ("new_scores", new_scores)):
            if label not in scores:
                raise ValueError(f"{name} has no score for label {label}")
        drops[int(label)] = float(old_scores[label]) - float(new_scores[label])
    return drops


def forgetting(old_scores: Mapping[int, float], new_scores: Mapping[int, float], labels: Iterable[int]) -> float:
    """Mean over ``labels`` of ``max(0, old - new)``: how much the old labels lost on average.

    Clipping at zero stops a gain on one label from hiding a loss on another (the
    usual average-forgetting measure, with production as the reference). For the
    gate's per-slice rule use :func:`label_drops`, whose maximum is the worst
    single label.

    Raises
    ------
    ValueError
        As :func:`label_drops`.
    """
    drops = label_drops(old_scores, new_scores, labels)
    return float(np.mean([max(0.0, drop) for drop in drops.values()]))


@dataclass(frozen=True)
class EvaluationReport:
    """One model's scores on one evaluation set; what a model version records as its metrics.

    ``per_label_f1`` and ``support`` (true samples per label) cover the same
    labels, in the same order. ``confusion`` holds the non-zero confusion cells
    over all samples. Mappings are read-only views.
    """

    n: int
    accuracy: float
    macro_f1: float
    per_label_f1: Mapping[int, float]
    support: Mapping[int, int]
    confusion: Mapping[tuple[int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if list(self.per_label_f1) != list(self.support):
            raise ValueError("per_label_f1 and support must cover the same labels in the same order")
        for name in ("per_label_f1", "support", "confusion"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def labels(self) -> tuple[int, ...]:
        """The label ids scored, in report order."""
        return tuple(self.per_label_f1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; label ids become string keys, confusion cells ``[true, pred, count]``."""
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_label_f1": {str(label): score for label, score in self.per_label_f1.items()},
            "support": {str(label): count for label, count in self.support.items()},
            "confusion": [[t, p, count] for (t, p), count in self.confusion.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """Inverse of :meth:`to_dict`, e.g. for a report read back from the model registry."""
        return cls(
            n=int(data["n"]),
            accuracy=float(data["accuracy"]),
            macro_f1=float(data["macro_f1"]),
            per_label_f1={int(label): float(score) for label, score in data["per_label_f1"].items()},
            support={int(label): int(count) for label, count in data["support"].items()},
            confusion={(int(t), int(p)): int(count) for t, p, count in data.get("confusion", [])},
        )


def evaluate(y_true: Any, y_pred: Any, labels: Iterable[int] | None = None) -> EvaluationReport:
    """Score one model's predictions on one evaluation set.

    ``labels`` chooses the labels that per-label F1, support and macro-F1 cover
    (default: those present in ``y_true``); accuracy, ``n`` and the confusion
    cells always cover every sample.

    Raises
    ------
    ValueError
        As :func:`per_label_f1`.
    """
    truth, pred = _paired(y_true, y_pred=y_pred)
    chosen = _label_set(labels, truth)
    tp, true_count, pred_count = _per_label_counts(truth, pred, chosen)
    scores = _f1(tp, true_count, pred_count)
    logger.debug("evaluated %d samples over %d labels", len(truth), len(chosen))
    return EvaluationReport(
        n=len(truth),
        accuracy=float(np.mean(truth == pred)),
        macro_f1=float(np.mean(scores)),
        per_label_f1={int(label): float(s) for label, s in zip(chosen, scores, strict=True)},
        support={int(label): int(c) for label, c in zip(chosen, true_count, strict=True)},
        confusion=confusion_counts(truth, pred),
    )
