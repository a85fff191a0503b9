"""Calibrated confidence and when to abstain, fitted on held-out logits.

A classifier over a closed label set gives every text one of its labels; a text no label
covers gets a confident wrong answer. Two standard steps make "I don't know" possible:

1. **Temperature scaling** (Guo et al., 2017): one scalar ``T`` dividing the logits, fitted
   by minimising the negative log-likelihood on held-out in-scope samples (T >= 1). It leaves the
   argmax unchanged and makes the max-softmax a usable confidence (``slda``'s discriminant
   scores are far too peaked before it).
2. **A threshold on the calibrated max-softmax** (Hendrycks & Gimpel, 2017): below it the
   model abstains. With no out-of-scope examples it is the quantile that abstains on a
   chosen share of in-scope held-out samples; with out-of-scope examples it maximises
   Youden's J (out-of-scope recall + in-scope kept - 1) within a cap on in-scope abstention.

Abstention rates measured on the samples the threshold was fitted on would be optimistic,
so :func:`cross_fitted_abstain_rate` fits on one half and measures on the other, both ways.

>>> cal = fit_calibration([[4.0, 0.0], [0.0, 4.0], [3.0, 0.0], [0.2, 0.0]], [0, 1, 0, 0],
...                       in_scope_abstain=0.25)
>>> cal.abstains([0.1, 0.0]), cal.abstains([5.0, 0.0])
(True, False)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Calibration", "auroc", "calibrated", "cross_fitted_abstain_rate", "fit_calibration", "fit_temperature"]

#: The temperature only ever softens. Held-out samples a model classifies perfectly (common
#: with few of them per label) make the likelihood keep rising as T -> 0, which would push
#: every confidence to 1 and leave nothing to threshold on; an underconfident model (T < 1)
#: is rare enough in fine-tuning that giving up sharpening costs little.
_T_MIN, _T_MAX = 1.0, 1000.0
#: Fewest out-of-scope held-out samples worth fitting the threshold to; fewer, the quantile rule.
MIN_OOS_FOR_FIT = 20


@dataclass(frozen=True)
class Calibration:
    """A version's temperature and abstain threshold, and what they were fitted on."""

    temperature: float
    #: Abstain when the calibrated max-softmax is below this (0.0: never).
    threshold: float
    #: In-scope held-out samples fitted on; out-of-scope ones (0: the quantile rule was used).
    n_in_scope: int
    n_out_of_scope: int
    #: The share of in-scope samples the threshold was chosen to abstain on (or capped at).
    in_scope_abstain: float
    score: str = "max_softmax"

    def probabilities(self, logits: Sequence[float]) -> list[float]:
        return _softmax(logits, self.temperature)

    def confidence(self, logits: Sequence[float]) -> float:
        return max(self.probabilities(logits))

    def abstains(self, logits: Sequence[float]) -> bool:
        return self.confidence(logits) < self.threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**{k: data[k] for k in ("temperature", "threshold", "n_in_scope", "n_out_of_scope",
                                           "in_scope_abstain", "score") if k in data})


def _softmax(row: Sequence[float], temperature: float) -> list[float]:
    scaled = [v / temperature for v in row]
    top = max(scaled)
    exps = [math.exp(v - top) for v in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def calibrated(logits: Sequence[Sequence[float]], temperature: float) -> list[float]:
    """Calibrated max-softmax per row."""
    return [max(_softmax(row, temperature)) for row in logits]


def fit_temperature(logits: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    """The temperature in [1, 1000] minimising held-out negative log-likelihood (1.0 with nothing to fit on)."""
    if not logits:
        return 1.0
    import torch

    values = torch.tensor([list(map(float, row)) for row in logits], dtype=torch.float64)
    targets = torch.tensor(list(labels), dtype=torch.long)
    # Search log T on a grid first (NLL in log T is smooth but can be flat far out), then refine.
    grid = torch.linspace(math.log(_T_MIN), math.log(_T_MAX), 121, dtype=torch.float64)
    losses = torch.stack([torch.nn.functional.cross_entropy(values / t.exp(), targets) for t in grid])
    log_t = grid[int(torch.argmin(losses))].clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=50)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(values / log_t.exp(), targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    fitted = float(log_t.detach().exp())
    if not math.isfinite(fitted):
        return 1.0
    return min(max(fitted, _T_MIN), _T_MAX)


def _quantile_threshold(scores: Sequence[float], share: float) -> float:
    """A threshold abstaining on at most ``share`` of ``scores`` (0.0 when ``share`` is 0)."""
    if share <= 0 or not scores:
        return 0.0
    ordered = sorted(scores)
    k = int(math.floor(share * len(ordered)))  # abstain on the k lowest
    return ordered[k] if k < len(ordered) else ordered[-1]


def fit_calibration(
    logits: Sequence[Sequence[float]],
    labels: Sequence[int],
    *,
    in_scope_abstain: float,
    oos_logits: Sequence[Sequence[float]] = (),
    min_oos: int = MIN_OOS_FOR_FIT,
) -> Calibration:
    """Temperature on the in-scope samples, then the threshold (see the module docstring);
    Youden's J with at least ``min_oos`` out-of-scope samples, the quantile rule otherwise."""
    temperature = fit_temperature(logits, labels)
    in_scores = calibrated(logits, temperature)
    threshold = _quantile_threshold(in_scores, in_scope_abstain)
    if oos_logits and len(oos_logits) >= min_oos and in_scores and in_scope_abstain > 0:
        oos_scores = calibrated(oos_logits, temperature)
        best = (-1.0, threshold)
        for candidate in sorted(set(in_scores) | set(oos_scores)):
            kept = sum(s >= candidate for s in in_scores) / len(in_scores)
            if 1.0 - kept > in_scope_abstain + 1e-12:
                break  # thresholds only go up from here: abstention on in-scope only grows
            caught = sum(s < candidate for s in oos_scores) / len(oos_scores)
            if caught + kept - 1.0 > best[0]:
                best = (caught + kept - 1.0, candidate)
        threshold = best[1]
    return Calibration(temperature=temperature, threshold=threshold, n_in_scope=len(in_scores),
                       n_out_of_scope=len(oos_logits), in_scope_abstain=in_scope_abstain)


def cross_fitted_abstain_rate(
    logits: Sequence[Sequence[float]],
    labels: Sequence[int],
    *,
    in_scope_abstain: float,
    oos_logits: Sequence[Sequence[float]] = (),
) -> tuple[int, int]:
    """In-scope abstentions and samples, each half scored by a calibration fitted on the other half."""
    halves = ([i for i in range(len(logits)) if i % 2 == 0], [i for i in range(len(logits)) if i % 2 == 1])
    oos_halves = (list(oos_logits)[0::2], list(oos_logits)[1::2])
    # The rule the full set gets (Youden's J or the quantile) is the one each half is fitted by.
    min_oos = 1 if len(oos_logits) >= MIN_OOS_FOR_FIT else len(oos_logits) + 1
    abstained = 0
    for fit_on, score_on, oos in ((halves[0], halves[1], oos_halves[0]), (halves[1], halves[0], oos_halves[1])):
        if not fit_on or not score_on:
            continue
        cal = fit_calibration([logits[i] for i in fit_on], [labels[i] for i in fit_on],
                              in_scope_abstain=in_scope_abstain, oos_logits=oos, min_oos=min_oos)
        abstained += sum(cal.abstains(logits[i]) for i in score_on)
    scored = len(halves[0]) + len(halves[1]) if halves[0] and halves[1] else 0
    return (abstained, scored)


def auroc(in_scope: Sequence[float], out_of_scope: Sequence[float]) -> float | None:
    """Probability that an in-scope text scores above an out-of-scope one (ties count half)."""
    if not in_scope or not out_of_scope:
        return None
    ranked = sorted([(s, 1) for s in in_scope] + [(s, 0) for s in out_of_scope])
    # Mann-Whitney U with average ranks for ties.
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        average = (i + j + 1) / 2  # ranks are 1-based
        rank_sum += average * sum(flag for _, flag in ranked[i:j])
        i = j
    n_in, n_out = len(in_scope), len(out_of_scope)
    return (rank_sum - n_in * (n_in + 1) / 2) / (n_in * n_out)
