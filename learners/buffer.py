"""Replay-buffer membership: which past training samples a candidate model rehearses.

Replay is what keeps a continually fine-tuned classifier from forgetting old labels
(DESIGN.md section 5: no replay 7% final accuracy, a 3% buffer 83%). This module only
decides *membership*, over the database's sample ids; it holds no texts and no tensors.
The caller persists :meth:`ReplayBuffer.to_state` with each model version and hands it
back to :meth:`ReplayBuffer.from_state` on the next run, so a restart continues the same
buffer exactly as an uninterrupted run would.

Policies
--------
``class_balanced`` (the default)
    The budget is split evenly over the labels seen so far; a label with fewer samples
    than its share keeps all of them and its spare slots go to the others. Within a
    label every sample is equally likely to be kept. It is the default because in
    class-incremental learning new labels arrive in bursts: a plain reservoir fills with
    the newest, largest labels and leaves the old ones, the ones being forgotten, with a
    handful of samples each.
``reservoir``
    Classic reservoir sampling: a uniform sample of every training sample seen so far.

Budgets
-------
``size=450`` keeps at most 450 samples. ``fraction=0.03`` keeps 3% of the training
samples seen so far (rounded half up), clamped to ``[min_size, max_size]``.

How samples are chosen
----------------------
Every sample id gets a fixed pseudo-random *priority* from a keyed hash of
``(seed, sample id)``; a group of ``k`` slots (the whole buffer, or one label's share)
holds the ``k`` samples of lowest priority among everything it has seen ("bottom-k"
sampling). That is a uniform sample without replacement, the distribution classic
reservoir sampling gives, and taking the randomness from the id rather than from a
running generator buys three things:

- a restart needs no generator state, and continues exactly;
- membership depends on *which* samples were seen, not on their order or on how they
  were split into updates;
- shrinking a share (a new label arrived) drops the highest priorities and leaves a
  uniform sample of the smaller size.

A fixed ``size`` never needs a sample back once it has let it go, so the buffer keeps
just its members. A ``fraction`` budget grows, and growing by new samples alone would
favour recent ones (by about 7% here, for a 3% budget over 15,000 samples), so the
buffer also keeps a *reserve*: the next lowest priorities of each group, enough for the
larger of its share and its proportional share of the budget (what an old label returns
to once a newly arrived label has grown past its share), plus a margin of about
``4 * sqrt(share) + 16``. In all that is at most about twice the budget, in practice
about 1.2 times it for ``class_balanced`` and 0.2 times it for ``reservoir``. What it
cannot do is give back samples a label gave up long ago: when a small label's share
keeps rising without new samples of it, it keeps what it has and the spare slots go to
the other labels.

Sample ids are the database's ids, which grow in ingestion order. The buffer keeps the
highest id it has seen (:attr:`ReplayBuffer.high_water`) rather than every id, so its
state stays the size of the buffer: an id at or below ``high_water`` counts as already
seen and is ignored.

Example
-------
>>> buffer = ReplayBuffer(BufferConfig(policy="class_balanced", size=4, seed=1))
>>> buffer.update(sample_ids=range(1, 11), labels=[0] * 10)
>>> buffer.capacity, buffer.seen, buffer.per_label()
(4, 10, {0: 4})
>>> buffer.update(sample_ids=[11, 12, 13], labels=[1, 1, 1])
>>> buffer.per_label()
{0: 2, 1: 2}
>>> import json
>>> restored = ReplayBuffer.from_state(json.loads(json.dumps(buffer.to_state())))
>>> restored.members == buffer.members
True

Errors
------
Bad arguments and malformed persisted state raise :class:`ValueError`
(:class:`TypeError` for a value of the wrong type), with a message naming the problem.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

__all__ = ["BufferConfig", "BufferMember", "ReplayBuffer"]

logger = logging.getLogger(__name__)

Policy = Literal["reservoir", "class_balanced"]
_POLICIES: tuple[str, ...] = get_args(Policy)
_STATE_VERSION = 1
_STATE_KEYS = frozenset({"version", "config", "seen", "high_water", "label_seen", "members", "reserve"})
_MAX_ID = 2**63 - 1  # a signed 64-bit database key
# The reserve beyond a group's target: about four standard deviations of the binomial
# count of candidates, so that a growing budget runs short only about once in 10^5 updates.
_MARGIN_SIGMAS, _MARGIN_EXTRA = 4, 16
_ALL = 1 << 64  # a priority threshold above every priority: "keep everything"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class BufferConfig:
    """How many samples the replay buffer keeps and how it picks them.

    Parameters
    ----------
    policy
        ``"class_balanced"`` (equal share per label; the default, see the module
        docstring for why) or ``"reservoir"`` (uniform over all samples seen).
    size
        A fixed budget in samples. Exactly one of ``size`` and ``fraction`` is given.
    fraction
        A budget that grows with the data: this fraction of the training samples seen
        so far, in ``(0, 1]``, rounded half up and clamped to ``[min_size, max_size]``.
    min_size, max_size
        Bounds on a ``fraction`` budget (a short stream still gets a useful buffer; a
        long one does not make each retrain slower and slower). Only valid with
        ``fraction``.
    seed
        Seeds the sample priorities; the same inputs and seed give the same members.

    Raises
    ------
    ValueError
        Both or neither of ``size`` and ``fraction``, a value out of range, an unknown
        policy, or bounds given with ``size``.
    TypeError
        A value of the wrong type.
    """

    policy: Policy = "class_balanced"
    size: int | None = None
    fraction: float | None = None
    min_size: int = 0
    max_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.policy not in _POLICIES:
            raise ValueError(f"policy must be one of {', '.join(_POLICIES)}, not {self.policy!r}")
        if (self.size is None) == (self.fraction is None):
            raise ValueError("give exactly one of size and fraction")
        for name in ("size", "max_size"):
            value = getattr(self, name)
            if value is not None and not _is_int(value):
                raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
        for name in ("min_size", "seed"):
            value = getattr(self, name)
            if not _is_int(value):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if self.size is not None:
            if self.size < 0:
                raise ValueError(f"size must be >= 0, got {self.size}")
            if self.min_size != 0 or self.max_size is not None:
                raise ValueError("min_size and max_size apply only to a fraction budget")
            return
        fraction = self.fraction
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
            raise TypeError(f"fraction must be a float or None, not {type(fraction).__name__}")
        if not 0.0 < fraction <= 1.0:  # also rejects NaN
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {self.min_size}")
        if self.max_size is not None and self.max_size < self.min_size:
            raise ValueError(f"max_size ({self.max_size}) must be >= min_size ({self.min_size})")

    def capacity_for(self, seen: int) -> int:
        """The budget in samples after ``seen`` training samples."""
        if self.fraction is None:
            return self.size or 0
        budget = max(math.floor(self.fraction * seen + 0.5), self.min_size)
        return budget if self.max_size is None else min(budget, self.max_size)


class BufferMember(NamedTuple):
    """One sample in the buffer; compares equal to the plain ``(sample_id, label)`` tuple."""

    sample_id: int
    label: int


class ReplayBuffer:
    """Membership of the replay buffer over sample ids; see the module docstring.

    Build an empty one from a :class:`BufferConfig`, or continue a persisted one with
    :meth:`from_state`; :meth:`update` it with each run's new training samples and read
    :attr:`members` to know what to rehearse.

    Internally it keeps *candidates*: the members plus, for a ``fraction`` budget, the
    reserve. Per group (the whole buffer for ``reservoir``, each label for
    ``class_balanced``) the candidates are always exactly the seen samples whose
    priority is below some threshold (as long as the config stays the same), which is
    what makes the members a uniform sample.
    """

    def __init__(self, config: BufferConfig) -> None:
        if not isinstance(config, BufferConfig):
            raise TypeError(f"config must be a BufferConfig, not {type(config).__name__}")
        self._config = config
        self._hash_key = str(config.seed).encode("ascii")
        self._seen = 0
        self._high_water: int | None = None
        self._label_seen: dict[int, int] = {}
        self._candidates: dict[int, int] = {}  # sample id -> label; members plus reserve
        self._priorities: dict[int, int] = {}  # sample id -> priority, for the candidates
        self._members: dict[int, int] = {}  # sample id -> label

    # -- reading -------------------------------------------------------------------

    @property
    def config(self) -> BufferConfig:
        return self._config

    @property
    def members(self) -> list[BufferMember]:
        """``(sample_id, label)`` of every sample in the buffer, sorted by sample id."""
        return [BufferMember(i, self._members[i]) for i in sorted(self._members)]

    @property
    def capacity(self) -> int:
        """The current budget.

        Members never exceed it. After an update they fill it
        (``len(members) == min(capacity, seen)``), always for a fixed ``size``; a
        ``fraction`` budget can fall a little short when a small label cannot get back
        samples it gave up long ago, or, about once in 10^5 updates, by chance.
        """
        return self._config.capacity_for(self._seen)

    @property
    def seen(self) -> int:
        """How many distinct training samples the buffer has been offered."""
        return self._seen

    @property
    def high_water(self) -> int | None:
        """The highest sample id seen (``None`` before any); ids at or below it are ignored."""
        return self._high_water

    def per_label(self) -> dict[int, int]:
        """Buffer members per label, sorted by label; labels with none are left out."""
        counts: dict[int, int] = {}
        for label in self._members.values():
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))

    def seen_per_label(self) -> dict[int, int]:
        """Training samples seen per label, sorted by label."""
        return dict(sorted(self._label_seen.items()))

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        return f"ReplayBuffer(members={len(self)}, capacity={self.capacity}, seen={self.seen}, config={self._config!r})"

    # -- changing ------------------------------------------------------------------

    def update(self, sample_ids: Iterable[int], labels: Iterable[int]) -> None:
        """Offer new training samples to the buffer.

        Parameters
        ----------
        sample_ids
            Database ids of training samples (never held-out ones).
        labels
            Label ids, parallel to ``sample_ids``.

        Ids at or below :attr:`high_water`, and repeats within the call, are ignored.

        Raises
        ------
        ValueError
            The two differ in length, an id or label is negative (or an id beyond 63
            bits), or one id comes with two different labels.
        TypeError
            An id or label is not an int.
        """
        ids = list(sample_ids)
        label_list = list(labels)
        if len(ids) != len(label_list):
            raise ValueError(f"sample_ids and labels differ in length: {len(ids)} != {len(label_list)}")
        floor = -1 if self._high_water is None else self._high_water
        fresh: dict[int, int] = {}
        for sample_id, label in zip(ids, label_list):
            if type(sample_id) is not int:  # exact type checks: fast, and they reject bool
                raise TypeError(f"sample ids must be ints, not {type(sample_id).__name__}")
            if type(label) is not int:
                raise TypeError(f"labels must be ints, not {type(label).__name__}")
            if not 0 <= sample_id <= _MAX_ID:
                raise ValueError(f"sample id {sample_id} is out of range [0, 2**63)")
            if label < 0:
                raise ValueError(f"label {label} of sample {sample_id} is negative")
            if sample_id <= floor:
                continue
            known = fresh.setdefault(sample_id, label)
            if known != label:
                raise ValueError(f"sample id {sample_id} is given twice with different labels: {known} and {label}")
        if not fresh:
            return
        # Thresholds come from the counts before this update: see _threshold.
        groups = self._groups()
        thresholds = {
            group: self._threshold(group, groups.get(group, ()))
            for group in map(self._group_of, set(fresh.values()))
        }
        label_thresholds = {label: thresholds[self._group_of(label)] for label in set(fresh.values())}
        for (sample_id, label), priority in zip(fresh.items(), self._priorities_of(fresh)):
            self._label_seen[label] = self._label_seen.get(label, 0) + 1
            if priority < label_thresholds[label]:
                self._candidates[sample_id] = label
                self._priorities[sample_id] = priority
        self._seen += len(fresh)
        self._high_water = max(floor, max(fresh))
        self._rebalance()
        logger.debug(
            "replay buffer offered %d new samples: %d members of capacity %d, %d candidates, %d seen",
            len(fresh), len(self._members), self.capacity, len(self._candidates), self._seen,
        )

    def forget(self, sample_ids: Iterable[int]) -> int:
        """Remove samples that no longer exist (an owner asked to forget them, or retention
        expired them); returns how many were candidates.

        A removed candidate no longer counts as seen, so the invariant that a group's
        candidates are everything it has seen below a threshold still holds, and its place
        goes to the next reserve sample of its group. Ids that are not candidates were
        dropped earlier; they stay in the seen counts (which only size the budget, by a
        handful), because the buffer no longer knows their labels.
        """
        gone = [i for i in set(sample_ids) if i in self._candidates]
        for sample_id in gone:
            label = self._candidates.pop(sample_id)
            del self._priorities[sample_id]
            self._members.pop(sample_id, None)
            self._label_seen[label] -= 1
            if not self._label_seen[label]:
                del self._label_seen[label]
            self._seen -= 1
        if gone:
            if not self._seen:
                self._high_water = None
            self._rebalance()
        return len(gone)

    def relabel(self, mapping: Mapping[int, int | None]) -> None:
        """Follow a change of head rows: label ``old`` becomes ``mapping[old]`` (``None``: the
        label is retired, its samples leave the buffer and the seen counts).

        Merged labels pool their candidates, and the members are chosen again. Every label
        the buffer knows must be in ``mapping``.
        """
        known = set(self._label_seen) | set(self._candidates.values())
        if known - set(mapping):
            raise ValueError(f"labels {sorted(known - set(mapping))} are not in the mapping")
        label_seen: dict[int, int] = {}
        for label, count in self._label_seen.items():
            new = mapping[label]
            if new is None:
                self._seen -= count
            else:
                label_seen[new] = label_seen.get(new, 0) + count
        self._label_seen = label_seen
        candidates = {i: mapping[label] for i, label in self._candidates.items() if mapping[label] is not None}
        self._priorities = {i: self._priorities[i] for i in candidates}
        self._candidates = candidates  # type: ignore[assignment]
        if not self._seen:
            self._high_water = None
        self._rebalance()

    def _priorities_of(self, sample_ids: Iterable[int]) -> list[int]:
        """Each id's priority: a keyed hash, not hash(), so it is the same in every process,
        Python version and platform."""
        blake2b, key, from_bytes = hashlib.blake2b, self._hash_key, int.from_bytes
        return [
            from_bytes(blake2b(i.to_bytes(8, "little"), digest_size=8, key=key).digest(), "little")
            for i in sample_ids
        ]

    def _group_of(self, label: int) -> int:
        return label if self._config.policy == "class_balanced" else 0

    def _group_seen(self, group: int) -> int:
        return self._label_seen.get(group, 0) if self._config.policy == "class_balanced" else self._seen

    def _groups(self) -> dict[int, list[int]]:
        """Candidate ids per group, each sorted by priority (ties, vanishingly rare, by id)."""
        groups: dict[int, list[int]] = {}
        for sample_id, label in self._candidates.items():
            groups.setdefault(self._group_of(label), []).append(sample_id)
        for ids in groups.values():
            ids.sort(key=lambda i: (self._priorities[i], i))
        return groups

    def _threshold(self, group: int, ids: Sequence[int]) -> int:
        """The priority below which a group's samples are candidates.

        A group that has dropped nothing takes everything; otherwise its candidates end
        just above their top priority (every dropped sample lies above it), or at 0 when
        it has none left. ``ids`` are the group's candidates, sorted by priority.
        """
        if len(ids) == self._group_seen(group):
            return _ALL
        return self._priorities[ids[-1]] + 1 if ids else 0

    def _shares(self, groups: Mapping[int, Sequence[int]]) -> dict[int, int]:
        capacity = self.capacity
        if self._config.policy == "reservoir":
            return {group: min(capacity, len(ids)) for group, ids in groups.items()}
        return _equal_shares(capacity, {group: len(ids) for group, ids in groups.items()})

    def _rebalance(self) -> None:
        """Choose the members from the candidates, then drop candidates nobody needs."""
        groups = self._groups()
        shares = self._shares(groups)
        members: dict[int, int] = {}
        keep: list[int] = []
        for group, ids in groups.items():
            share = shares[group]
            members.update((i, self._candidates[i]) for i in ids[:share])
            # The new threshold never falls below the members' priorities, so each group's
            # candidates stay "everything seen below a threshold". A fixed budget never
            # needs a sample back; a growing one keeps a reserve to grow into.
            floor = self._priorities[ids[share - 1]] + 1 if share else 0
            wanted = floor
            if self._config.fraction is not None:
                group_seen = self._group_seen(group)
                # Enough for the larger of its share now and its proportional share of the
                # budget (what it returns to once a new label has grown past its share),
                # plus a margin for chance; at most about twice the budget in all.
                proportional = -(-self.capacity * group_seen // self._seen)
                target = max(share, proportional)
                target += _MARGIN_SIGMAS * math.isqrt(target) + _MARGIN_EXTRA
                wanted = max(floor, min(_ALL, (target << 64) // group_seen))
            threshold = min(self._threshold(group, ids), wanted)
            keep.extend(i for i in ids if self._priorities[i] < threshold)
        self._members = members
        self._candidates = {i: self._candidates[i] for i in keep}
        self._priorities = {i: self._priorities[i] for i in keep}

    # -- persistence ---------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue this buffer, as JSON-serialisable plain data.

        ``members`` is the buffer; ``reserve`` holds the further candidates a growing
        (``fraction``) budget keeps, and is empty for a fixed ``size``.
        """
        return {
            "version": _STATE_VERSION,
            "config": dataclasses.asdict(self._config),
            "seen": self._seen,
            "high_water": self._high_water,
            "label_seen": [[label, count] for label, count in sorted(self._label_seen.items())],
            "members": [[sample_id, label] for sample_id, label in self.members],
            "reserve": [
                [sample_id, self._candidates[sample_id]]
                for sample_id in sorted(self._candidates.keys() - self._members.keys())
            ],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, config: BufferConfig | None = None) -> ReplayBuffer:
        """Continue a buffer persisted with :meth:`to_state`.

        Parameters
        ----------
        state
            The persisted state, e.g. after a JSON round trip.
        config
            The config to continue under, e.g. today's settings. If it differs from the
            persisted one (an operator changed the budget, policy or seed), the members
            are chosen again from the persisted candidates at once. Without it, or with
            the same config, the buffer continues exactly as an uninterrupted run would.

        Raises
        ------
        ValueError
            The state is malformed; the message says where.
        """
        buffer = cls(_config_from_state(state))
        buffer._seen = _state_int(state, "seen")
        high_water = state["high_water"]
        if high_water is not None and not (_is_int(high_water) and 0 <= high_water <= _MAX_ID):
            raise _bad_state(f"high_water must be null or a sample id, got {high_water!r}")
        if (high_water is None) != (buffer._seen == 0):
            raise _bad_state(f"high_water is {high_water!r} but seen is {buffer._seen}")
        buffer._high_water = high_water
        buffer._label_seen = _label_seen_from_state(state)
        if sum(buffer._label_seen.values()) != buffer._seen:
            raise _bad_state(f"label_seen counts add up to {sum(buffer._label_seen.values())}, not seen={buffer._seen}")
        members = _samples_from_state(state, "members", buffer._label_seen, high_water)
        reserve = _samples_from_state(state, "reserve", buffer._label_seen, high_water)
        both = sorted(members.keys() & reserve.keys())
        if both:
            raise _bad_state(f"sample {both[0]} is in both members and reserve")
        candidates = {**members, **reserve}
        per_label: dict[int, int] = {}
        for label in candidates.values():
            per_label[label] = per_label.get(label, 0) + 1
        for label, count in sorted(per_label.items()):
            if count > buffer._label_seen[label]:
                raise _bad_state(
                    f"members and reserve hold {count} samples of label {label}, "
                    f"more than the {buffer._label_seen[label]} seen"
                )
        if len(members) > buffer.capacity:
            raise _bad_state(f"{len(members)} members exceed the capacity of {buffer.capacity}")
        if reserve and buffer._config.fraction is None:
            raise _bad_state("a buffer with a fixed size keeps no reserve")
        buffer._candidates = candidates
        buffer._priorities = dict(zip(candidates, buffer._priorities_of(candidates)))
        groups = buffer._groups()
        shares = buffer._shares(groups)
        chosen = {i for group, ids in groups.items() for i in ids[: shares[group]]}
        if chosen != members.keys():
            raise _bad_state("members are not the samples this config chooses from members and reserve")
        buffer._members = members
        if config is None or config == buffer._config:
            return buffer
        replaced = cls(config)
        replaced._seen, replaced._high_water = buffer._seen, buffer._high_water
        replaced._label_seen = buffer._label_seen
        replaced._candidates = candidates
        replaced._priorities = dict(zip(candidates, replaced._priorities_of(candidates)))
        replaced._rebalance()
        return replaced


def _equal_shares(capacity: int, available: Mapping[int, int]) -> dict[int, int]:
    """Split ``capacity`` slots over labels as evenly as their ``available`` counts allow.

    Equivalent to dealing slots round-robin in label order, skipping labels that have
    run out: each label gets ``q`` or ``q + 1`` (lower label ids take the remainder), or
    all it has if that is less. With a fixed capacity a label's share therefore never
    grows back once cut, so a fixed-size buffer never needs a sample it dropped.
    """
    if sum(available.values()) <= capacity:
        return dict(available)
    low, high = 0, max(available.values())  # the largest level q with sum(min(n, q)) <= capacity
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in available.values()) <= capacity:
            low = mid
        else:
            high = mid - 1
    shares = {label: min(n, low) for label, n in available.items()}
    spare = capacity - sum(shares.values())
    for label in sorted(label for label, n in available.items() if n > low)[:spare]:
        shares[label] += 1
    return shares


# -- state validation ------------------------------------------------------------------


def _bad_state(detail: str) -> ValueError:
    return ValueError(f"malformed replay buffer state: {detail}")


def _config_from_state(state: Mapping[str, Any]) -> BufferConfig:
    if not isinstance(state, Mapping):
        raise _bad_state(f"expected a mapping, got {type(state).__name__}")
    missing = sorted(_STATE_KEYS - state.keys())
    if missing:
        raise _bad_state(f"missing keys: {', '.join(missing)}")
    unknown = sorted(str(key) for key in state.keys() - _STATE_KEYS)
    if unknown:
        raise _bad_state(f"unknown keys: {', '.join(unknown)}")
    if state["version"] != _STATE_VERSION:
        raise _bad_state(f"unsupported version {state['version']!r} (this code reads version {_STATE_VERSION})")
    raw = state["config"]
    if not isinstance(raw, Mapping):
        raise _bad_state(f"config must be a mapping, got {type(raw).__name__}")
    fields = {field.name for field in dataclasses.fields(BufferConfig)}
    if set(raw) != fields:
        raise _bad_state(f"config keys must be {', '.join(sorted(fields))}, got {', '.join(sorted(map(str, raw)))}")
    try:
        return BufferConfig(**raw)
    except (TypeError, ValueError) as exc:
        raise _bad_state(f"config: {exc}") from exc


def _state_int(state: Mapping[str, Any], key: str) -> int:
    value = state[key]
    if not _is_int(value) or value < 0:
        raise _bad_state(f"{key} must be a non-negative int, got {value!r}")
    return value


def _int_pairs(state: Mapping[str, Any], key: str) -> list[tuple[int, int]]:
    raw = state[key]
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise _bad_state(f"{key} must be a list of [int, int] pairs, got {type(raw).__name__}")
    pairs = []
    for position, item in enumerate(raw):
        if (
            not isinstance(item, Sequence)
            or isinstance(item, (str, bytes))
            or len(item) != 2
            or not all(_is_int(v) and v >= 0 for v in item)
        ):
            raise _bad_state(f"{key}[{position}] must be a pair of non-negative ints, got {item!r}")
        pairs.append((item[0], item[1]))
    return pairs


def _label_seen_from_state(state: Mapping[str, Any]) -> dict[int, int]:
    label_seen: dict[int, int] = {}
    for label, count in _int_pairs(state, "label_seen"):
        if label in label_seen:
            raise _bad_state(f"label_seen lists label {label} twice")
        if count == 0:
            raise _bad_state(f"label_seen count of label {label} is 0")
        label_seen[label] = count
    return label_seen


def _samples_from_state(
    state: Mapping[str, Any], key: str, label_seen: Mapping[int, int], high_water: int | None
) -> dict[int, int]:
    samples: dict[int, int] = {}
    for sample_id, label in _int_pairs(state, key):
        if sample_id in samples:
            raise _bad_state(f"{key} lists sample {sample_id} twice")
        if label not in label_seen:
            raise _bad_state(f"{key} sample {sample_id} has label {label}, which label_seen does not list")
        if high_water is None or sample_id > high_water:
            raise _bad_state(f"{key} sample {sample_id} is above high_water={high_water}")
        samples[sample_id] = label
    return samples
