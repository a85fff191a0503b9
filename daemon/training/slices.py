"""Group slices of the held-out set (``gate.slices``): which group each sample is in, and
how each model did on each group.

A slice key ``meta.<name>`` reads the record's ``meta[<name>]`` (a top-level key, taken
literally even when it contains dots). Samples without it (or with ``null``) are in no
group, and the share that has it is the key's coverage. Groups are the ``top_n`` most
frequent values (ties broken by value, so the choice is stable); every other value is
pooled as ``(other)``, which bounds the number of groups — and of Prometheus series —
whatever the data holds. The gate (``daemon.training.gate``) decides on the outcomes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from daemon.training.gate import SliceGroup, SliceOutcome
from storage.samples import StoredExample

__all__ = ["OTHER_GROUP", "group_value", "slice_outcomes"]

#: The pooled group of every value outside the top N.
OTHER_GROUP = "(other)"
#: Longest group value kept (values are shown in decisions and used as metric labels).
_MAX_VALUE_CHARS = 64


def group_value(meta: Mapping[str, Any] | None, key: str) -> str | None:
    """The group of a sample with ``meta`` under slice ``key`` (``meta.<name>``), or ``None``."""
    if not meta:
        return None
    value = meta.get(key.removeprefix("meta."))
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text[:_MAX_VALUE_CHARS] if text else None


def slice_outcomes(
    examples: Sequence[StoredExample], keys: Sequence[str], *, top_n: int,
    candidate: Mapping[int, str], production: Mapping[int, str] | None, old_labels: Collection[str],
) -> list[SliceOutcome]:
    """Per key, the groups of ``examples`` with each model's answers (predicted label by sample id)."""
    old = set(old_labels)
    outcomes = []
    for key in keys:
        values = {e.sample_id: group_value(e.meta, key) for e in examples}
        counts = Counter(v for v in values.values() if v is not None)
        kept = {value for value, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top_n]}
        tallies: dict[str, list[int]] = {}
        for example in examples:
            value = values[example.sample_id]
            if value is None:
                continue
            group = value if value in kept else OTHER_GROUP
            # n, candidate right, production right, old n, lost, gained
            tally = tallies.setdefault(group, [0, 0, 0, 0, 0, 0])
            is_right = candidate[example.sample_id] == example.label
            was_right = production is not None and production[example.sample_id] == example.label
            tally[0] += 1
            tally[1] += is_right
            tally[2] += was_right
            if production is not None and example.label in old:
                tally[3] += 1
                tally[4] += was_right and not is_right
                tally[5] += is_right and not was_right
        groups = [SliceGroup(value=value, n=n, candidate_correct=cand, production_correct=prod if production else None,
                             old_n=old_n, lost=lost, gained=gained)
                  for value, (n, cand, prod, old_n, lost, gained) in sorted(
                      tallies.items(), key=lambda item: (item[0] == OTHER_GROUP, -item[1][0], item[0]))]
        outcomes.append(SliceOutcome(key=key, total=len(examples), covered=sum(counts.values()), groups=tuple(groups)))
    return outcomes
