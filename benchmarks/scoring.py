"""Class-incremental scores: accuracy on the labels seen so far, per stage group, and forgetting.

Why one module: the daemon run and the in-process baselines of ``lifelong bench
continual`` must be scored by the same code, or the lines on one chart would not
mean the same thing. The definitions are the usual ones of the class-incremental
literature (e.g. Chaudhry et al. 2018 for forgetting):

- accuracy after stage *i*: on the test texts of every label of stages 1..i;
- average incremental accuracy: the mean of those accuracies over the stages;
- forgetting after stage *i*: over the earlier stage groups *j < i*, the mean of the
  group's best accuracy before stage *i* minus its accuracy now.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from benchmarks.datasets import Pair, Stage

__all__ = ["StageScore", "average_incremental", "forgetting", "score_stage", "seen_test"]


@dataclass(frozen=True)
class StageScore:
    #: Accuracy on the test texts of every label seen so far.
    accuracy: float
    #: Accuracy on each stage group's test texts, stages 1..i in order.
    groups: list[float]
    #: Recall on the test texts of this stage's own (new) labels.
    new_labels_recall: float
    #: Labels of this stage whose recall is below 50%: "not served".
    unserved_labels: list[str] = field(default_factory=list)
    texts: int = 0


def seen_test(test: list[Pair], stages: list[Stage], upto: int) -> list[Pair]:
    """The test pairs of the labels of stages 1..``upto`` (1-based)."""
    seen = {label for stage in stages[:upto] for label in stage.labels}
    return [pair for pair in test if pair[1] in seen]


def score_stage(scored: list[Pair], predicted: list[str], stages: list[Stage], upto: int) -> StageScore:
    """Score ``predicted`` (one label per pair of ``scored``, as from :func:`seen_test`) after stage ``upto``."""
    if len(predicted) != len(scored):
        raise ValueError(f"{len(predicted)} predictions for {len(scored)} test texts")
    if not scored:
        raise ValueError(f"no test texts for the labels of stages 1..{upto}")
    correct: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for (_, label), got in zip(scored, predicted, strict=True):
        total[label] += 1
        correct[label] += got == label

    def rate(labels: list[str]) -> float:
        n = sum(total[label] for label in labels)
        return sum(correct[label] for label in labels) / n if n else float("nan")

    new = stages[upto - 1].labels
    return StageScore(
        accuracy=sum(correct.values()) / len(scored),
        groups=[rate(stage.labels) for stage in stages[:upto]],
        new_labels_recall=rate(new),
        unserved_labels=[label for label in new if total[label] and correct[label] / total[label] < 0.5],
        texts=len(scored),
    )


def forgetting(groups_by_stage: list[list[float]]) -> list[float | None]:
    """Forgetting after each stage from the per-group accuracies of every stage (None after the first)."""
    result: list[float | None] = [None]
    for i in range(1, len(groups_by_stage)):
        drops = [max(groups_by_stage[k][j] for k in range(j, i)) - groups_by_stage[i][j] for j in range(i)]
        result.append(statistics.fmean(drops))
    return result


def average_incremental(accuracies: list[float]) -> float:
    return statistics.fmean(accuracies)
