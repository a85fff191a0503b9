"""After the gate rejects a candidate: what to tell the operator, and what the next retrain does differently.

Why: a rejection must not leave the daemon stuck. The gate's checks say *what*
failed; an operator also needs to know what would get the new labels served, and
the next retrain must not simply repeat the rejected one. For each old label the
gate found forgotten, the next run from the same production model replays that
label's stored training samples on top of the buffer
(``training.regressed_replay_per_label``), which is the standard remedy for
class-incremental forgetting; a label-flipped batch stays rejected, because its
flips come from the new data, not from too little replay.

>>> from daemon.training.gate import Check, Decision
>>> failed = Decision(promote=False, summary="reject: label_forgetting:billing failed", checks=(
...     Check("label_forgetting:billing", False, 0.4, 0.25, "billing F1 0.500 vs 0.900"),))
>>> regressed_labels(failed.to_dict()["checks"])
['billing']
>>> print(advice(failed, version="v0007", new_labels=["refund", "card"]))
The new labels card, refund stay unserved until a candidate passes. The next retrain replays the stored training samples of billing (up to training.regressed_replay_per_label each); more labelled samples of them help too. Once checked, an operator may promote this candidate anyway: lifelong models promote v0007 --reason "...".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from daemon.training.gate import Decision

__all__ = ["advice", "regressed_labels"]

_LABEL_CHECK = "label_forgetting:"


def regressed_labels(checks: Sequence[Mapping[str, Any]]) -> list[str]:
    """The old labels named by failed ``label_forgetting:<label>`` checks (stored check dicts), sorted."""
    return sorted(str(c["name"])[len(_LABEL_CHECK):] for c in checks
                  if str(c.get("name", "")).startswith(_LABEL_CHECK) and not c.get("passed"))


def _names(labels: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(labels)[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def advice(decision: Decision, *, version: str, new_labels: Sequence[str], replays: bool = True) -> str:
    """One paragraph for a rejected ``decision``: what stays unserved, what to do, what the next run changes.

    ``replays``: whether the configured strategy replays (only then does the next run
    replay the regressed labels' samples).
    """
    failed = {check.name for check in decision.checks if not check.passed}
    parts = []
    if new_labels:
        parts.append(f"The new labels {_names(new_labels)} stay unserved until a candidate passes.")
    regressed = regressed_labels(decision.to_dict()["checks"])
    if not regressed and "old_label_forgetting" in failed and replays:
        parts.append("The old labels as a whole got worse: the next retrain replays the stored training samples "
                     "of every old label (up to training.regressed_replay_per_label each).")
    elif regressed and replays:
        parts.append(f"The next retrain replays the stored training samples of {_names(regressed)} (up to "
                     "training.regressed_replay_per_label each); more labelled samples of them help too.")
    elif regressed:
        parts.append(f"{_names(regressed)} got worse and this strategy does not replay: a strategy with replay "
                     "(replay+lwf) or slda, or more labelled samples of them, would keep them.")
    elif "old_label_forgetting" in failed:
        parts.append("The old labels as a whole got worse: a larger replay buffer (training.buffer.fraction) or "
                     "the slda strategy, which cannot forget, would keep them.")
    if "negative_flip_rate" in failed:
        parts.append("Many answers production got right changed: check the new records for wrong labels (a "
                     "label-flipped batch looks like this) before anything else.")
    if "primary_improvement" in failed:
        parts.append("The candidate is not better than production overall: more samples of the new labels, or "
                     "more epochs for a fine-tuning strategy.")
    if failed & {"eval_samples", "min_absolute"}:
        parts.append("Too little or too hard held-out data to promote a first model: send more labelled samples.")
    parts.append(f'Once checked, an operator may promote this candidate anyway: lifelong models promote '
                 f'{version} --reason "...".')
    return " ".join(parts)
