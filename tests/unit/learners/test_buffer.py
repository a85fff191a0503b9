from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any

import pytest

from learners.buffer import BufferConfig, BufferMember, ReplayBuffer

CONFIGS = {
    "reservoir-size": BufferConfig(policy="reservoir", size=40, seed=3),
    "reservoir-fraction": BufferConfig(policy="reservoir", fraction=0.05, min_size=10, max_size=60, seed=3),
    "balanced-size": BufferConfig(policy="class_balanced", size=40, seed=3),
    "balanced-fraction": BufferConfig(policy="class_balanced", fraction=0.05, min_size=10, seed=3),
}


def exact(message: str) -> str:
    return f"^{re.escape(message)}$"


def class_incremental_stream(n_labels: int = 8, per_label: int = 150) -> tuple[list[int], list[int]]:
    """Ids as the database hands them out (increasing, with held-out gaps), labels in bursts."""
    ids, labels = [], []
    sample_id = 0
    for label in range(n_labels):
        for _ in range(per_label):
            sample_id += 1 if sample_id % 10 else 2  # every tenth id is a held-out sample
            ids.append(sample_id)
            labels.append(label)
    return ids, labels


def feed(buffer: ReplayBuffer, ids: list[int], labels: list[int], batch: int) -> None:
    for start in range(0, len(ids), batch):
        buffer.update(ids[start : start + batch], labels[start : start + batch])


def reload(buffer: ReplayBuffer) -> ReplayBuffer:
    return ReplayBuffer.from_state(json.loads(json.dumps(buffer.to_state())))


class TestBufferConfig:
    def test_config_defaults_to_class_balanced(self) -> None:
        assert BufferConfig(size=10).policy == "class_balanced"

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({}, "give exactly one of size and fraction"),
            ({"size": 10, "fraction": 0.1}, "give exactly one of size and fraction"),
            ({"size": -1}, "size must be >= 0, got -1"),
            ({"size": 10, "min_size": 5}, "min_size and max_size apply only to a fraction budget"),
            ({"size": 10, "max_size": 5}, "min_size and max_size apply only to a fraction budget"),
            ({"fraction": 0.0}, "fraction must be in (0, 1], got 0.0"),
            ({"fraction": 1.5}, "fraction must be in (0, 1], got 1.5"),
            ({"fraction": float("nan")}, "fraction must be in (0, 1], got nan"),
            ({"fraction": 0.1, "min_size": -1}, "min_size must be >= 0, got -1"),
            ({"fraction": 0.1, "min_size": 10, "max_size": 5}, "max_size (5) must be >= min_size (10)"),
            ({"size": 10, "policy": "fifo"}, "policy must be one of reservoir, class_balanced, not 'fifo'"),
        ],
    )
    def test_config_rejects_bad_values(self, kwargs: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=exact(message)):
            BufferConfig(**kwargs)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"size": "450"}, "size must be an int or None, not str"),
            ({"size": True}, "size must be an int or None, not bool"),
            ({"fraction": "0.1"}, "fraction must be a float or None, not str"),
            ({"size": 10, "seed": 1.5}, "seed must be an int, not float"),
        ],
    )
    def test_config_rejects_wrong_types(self, kwargs: dict[str, Any], message: str) -> None:
        with pytest.raises(TypeError, match=exact(message)):
            BufferConfig(**kwargs)

    def test_capacity_for_rounds_half_up_and_clamps(self) -> None:
        assert [BufferConfig(fraction=0.5).capacity_for(n) for n in (0, 1, 3, 5)] == [0, 1, 2, 3]
        config = BufferConfig(fraction=0.1, min_size=5, max_size=20)
        assert [config.capacity_for(n) for n in (0, 10, 49, 51, 120, 199, 201, 10_000)] == [5, 5, 5, 5, 12, 20, 20, 20]
        assert BufferConfig(size=7).capacity_for(10_000) == 7


class TestUpdateCapacity:
    @pytest.mark.parametrize("name", sorted(CONFIGS))
    def test_update_never_exceeds_capacity_and_fills_it(self, name: str) -> None:
        rng = random.Random(11)
        buffer = ReplayBuffer(CONFIGS[name])
        sample_id = 0
        for _ in range(120):
            batch = rng.randint(1, 40)
            n_labels = 1 + sample_id // 200  # new labels keep arriving
            ids = [sample_id + k + 1 for k in range(batch)]
            sample_id += batch
            buffer.update(ids, [rng.randrange(n_labels) for _ in ids])
            assert len(buffer) <= buffer.capacity
            assert len(buffer) == min(buffer.capacity, buffer.seen)
            assert sum(buffer.per_label().values()) == len(buffer)
            assert sum(buffer.seen_per_label().values()) == buffer.seen

    def test_update_with_size_zero_keeps_nothing(self) -> None:
        buffer = ReplayBuffer(BufferConfig(size=0))
        buffer.update(range(1, 101), [i % 3 for i in range(1, 101)])
        assert buffer.members == []
        assert buffer.to_state()["reserve"] == []

    def test_update_keeps_everything_below_capacity(self) -> None:
        buffer = ReplayBuffer(BufferConfig(policy="reservoir", size=10))
        buffer.update([5, 3, 9], [1, 0, 1])
        assert buffer.members == [(3, 0), (5, 1), (9, 1)]
        assert buffer.members[0] == BufferMember(sample_id=3, label=0)


class TestUpdateReservoir:
    def test_update_reservoir_is_uniform_over_everything_seen(self) -> None:
        n_seeds, n_ids, size = 2000, 100, 10
        hits = [0] * (n_ids + 1)
        for seed in range(n_seeds):
            buffer = ReplayBuffer(BufferConfig(policy="reservoir", size=size, seed=seed))
            ids = list(range(1, n_ids + 1))
            feed(buffer, ids, [i % 4 for i in ids], batch=7)
            for sample_id, _ in buffer.members:
                hits[sample_id] += 1
        rates = [h / n_seeds for h in hits[1:]]
        # Each id is kept with probability 10/100; the binomial standard deviation is 0.0067.
        assert max(abs(rate - size / n_ids) for rate in rates) < 0.03
        assert abs(sum(rates[:20]) / 20 - sum(rates[-20:]) / 20) < 0.015  # no favouring of early or late ids

    def test_update_reservoir_fraction_is_uniform_while_the_budget_grows(self) -> None:
        n_seeds, n_ids = 500, 1000
        hits = [0] * (n_ids + 1)
        for seed in range(n_seeds):
            buffer = ReplayBuffer(BufferConfig(policy="reservoir", fraction=0.05, seed=seed))
            ids = list(range(1, n_ids + 1))
            feed(buffer, ids, [0] * n_ids, batch=13)
            assert len(buffer) == 50
            for sample_id, _ in buffer.members:
                hits[sample_id] += 1
        rates = [h / n_seeds for h in hits[1:]]
        first, last = sum(rates[:250]) / 250, sum(rates[-250:]) / 250
        # Mean over 250 ids of rates near 0.05: standard deviation about 0.0006.
        assert abs(first - 0.05) < 0.003
        assert abs(last - 0.05) < 0.003

    def test_update_reservoir_ignores_labels_when_choosing(self) -> None:
        buffer = ReplayBuffer(BufferConfig(policy="reservoir", size=10, seed=0))
        buffer.update(range(1, 1001), [0] * 990 + [1] * 10)
        assert sum(buffer.per_label().values()) == 10
        assert buffer.per_label().get(1, 0) <= 2  # label 1 is 1% of the data, not half the buffer


class TestUpdateClassBalanced:
    def test_update_gives_each_label_floor_or_ceil_of_its_share(self) -> None:
        buffer = ReplayBuffer(BufferConfig(policy="class_balanced", size=10))
        ids, labels = class_incremental_stream(n_labels=3, per_label=20)
        buffer.update(ids, labels)
        assert buffer.per_label() == {0: 4, 1: 3, 2: 3}

    def test_update_rebalances_when_a_new_label_arrives(self) -> None:
        buffer = ReplayBuffer(BufferConfig(policy="class_balanced", size=10, seed=5))
        buffer.update(range(1, 41), [0] * 20 + [1] * 20)
        assert buffer.per_label() == {0: 5, 1: 5}
        before = set(buffer.members)
        buffer.update(range(41, 61), [2] * 20)
        assert buffer.per_label() == {0: 4, 1: 3, 2: 3}
        old = {member for member in buffer.members if member.label != 2}
        assert old < before  # old labels only gave up slots; nothing old came in

    def test_update_small_label_keeps_everything_and_spare_slots_go_to_others(self) -> None:
        buffer = ReplayBuffer(BufferConfig(policy="class_balanced", size=10, seed=5))
        buffer.update(range(1, 43), [0] * 2 + [1] * 20 + [2] * 20)
        assert buffer.per_label() == {0: 2, 1: 4, 2: 4}
        assert {member.sample_id for member in buffer.members if member.label == 0} == {1, 2}
        buffer.update(range(43, 63), [0] * 20)  # the small label grows and takes its share back
        assert buffer.per_label() == {0: 4, 1: 3, 2: 3}

    def test_update_more_labels_than_slots_gives_the_lowest_label_ids_one_each(self) -> None:
        buffer = ReplayBuffer(BufferConfig(policy="class_balanced", size=3))
        buffer.update(range(1, 11), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
        assert buffer.per_label() == {0: 1, 1: 1, 2: 1}

    def test_update_is_uniform_within_each_label_across_bursts(self) -> None:
        n_seeds, per_label, size = 2000, 40, 12
        ids, labels = class_incremental_stream(n_labels=3, per_label=per_label)
        hits = dict.fromkeys(ids, 0)
        for seed in range(n_seeds):
            buffer = ReplayBuffer(BufferConfig(policy="class_balanced", size=size, seed=seed))
            feed(buffer, ids, labels, batch=7)
            assert buffer.per_label() == {0: 4, 1: 4, 2: 4}
            for sample_id, _ in buffer.members:
                hits[sample_id] += 1
        # Label 0 went from 12 slots to 6 to 4; each of its samples still has a 4/40 chance.
        assert max(abs(hits[i] / n_seeds - 4 / per_label) for i in ids) < 0.03

    def test_update_fraction_keeps_old_labels_at_their_share_through_each_burst(self) -> None:
        ids, labels = class_incremental_stream(n_labels=10, per_label=1000)
        buffer = ReplayBuffer(BufferConfig(policy="class_balanced", fraction=0.03, seed=2))
        feed(buffer, ids, labels, batch=50)
        assert buffer.per_label() == dict.fromkeys(range(10), 30)
        assert len(buffer.to_state()["reserve"]) < 2 * buffer.capacity


class TestUpdateFractionBudget:
    def test_update_fraction_budget_grows_with_seen(self) -> None:
        buffer = ReplayBuffer(BufferConfig(policy="reservoir", fraction=0.1, seed=1))
        buffer.update(range(1, 101), [0] * 100)
        assert (buffer.seen, buffer.capacity, len(buffer)) == (100, 10, 10)
        buffer.update(range(101, 151), [1] * 50)
        assert (buffer.seen, buffer.capacity, len(buffer)) == (150, 15, 15)

    def test_update_fraction_budget_respects_min_and_max(self) -> None:
        buffer = ReplayBuffer(BufferConfig(fraction=0.01, min_size=5, max_size=8))
        buffer.update(range(1, 101), [0] * 100)
        assert (buffer.capacity, len(buffer)) == (5, 5)
        buffer.update(range(101, 2001), [1] * 1900)
        assert (buffer.capacity, len(buffer)) == (8, 8)

    def test_update_fraction_budget_below_min_size_keeps_everything(self) -> None:
        buffer = ReplayBuffer(BufferConfig(fraction=0.01, min_size=50))
        buffer.update(range(1, 31), [0] * 30)
        assert (buffer.capacity, len(buffer)) == (50, 30)


class TestUpdateDeterminism:
    @pytest.mark.parametrize("name", sorted(CONFIGS))
    def test_update_same_inputs_and_seed_give_same_members(self, name: str) -> None:
        ids, labels = class_incremental_stream()
        first, second = ReplayBuffer(CONFIGS[name]), ReplayBuffer(CONFIGS[name])
        feed(first, ids, labels, batch=37)
        feed(second, ids, labels, batch=37)
        assert first.members == second.members
        assert first.to_state() == second.to_state()

    @pytest.mark.parametrize("name", sorted(CONFIGS))
    def test_update_other_seed_gives_other_members(self, name: str) -> None:
        ids, labels = class_incremental_stream()
        first = ReplayBuffer(CONFIGS[name])
        other = ReplayBuffer(BufferConfig(**{**CONFIGS[name].__dict__, "seed": 4}))
        first.update(ids, labels)
        other.update(ids, labels)
        assert first.members != other.members

    @pytest.mark.parametrize("name", sorted(CONFIGS))
    def test_update_members_do_not_depend_on_batching_or_order(self, name: str) -> None:
        # Guaranteed for a fixed size; for a fraction budget, unless chance leaves the reserve
        # short (about once in 10^5 updates), which this seed does not.
        ids, labels = class_incremental_stream()
        at_once = ReplayBuffer(CONFIGS[name])
        at_once.update(ids, labels)
        in_batches = ReplayBuffer(CONFIGS[name])
        feed(in_batches, ids, labels, batch=9)
        shuffled = ReplayBuffer(CONFIGS[name])
        pairs = list(zip(ids, labels))
        random.Random(0).shuffle(pairs)
        shuffled.update([i for i, _ in pairs], [label for _, label in pairs])
        assert in_batches.members == at_once.members
        assert shuffled.members == at_once.members


class TestUpdateSeenIds:
    def test_update_ignores_ids_seen_in_an_earlier_update(self) -> None:
        buffer = ReplayBuffer(BufferConfig(size=10))
        buffer.update([1, 2, 3], [0, 0, 1])
        buffer.update([2, 3, 4], [0, 1, 1])
        assert buffer.seen == 4
        assert buffer.seen_per_label() == {0: 2, 1: 2}
        assert buffer.members == [(1, 0), (2, 0), (3, 1), (4, 1)]

    def test_update_ignores_repeats_within_one_update(self) -> None:
        buffer = ReplayBuffer(BufferConfig(size=10))
        buffer.update([5, 5, 6, 5], [1, 1, 2, 1])
        assert buffer.seen == 2
        assert buffer.members == [(5, 1), (6, 2)]

    def test_update_treats_ids_at_or_below_high_water_as_seen(self) -> None:
        buffer = ReplayBuffer(BufferConfig(size=10))
        buffer.update([10, 20], [0, 0])
        buffer.update([15, 20, 21], [0, 0, 0])
        assert buffer.high_water == 21
        assert buffer.seen == 3
        assert [member.sample_id for member in buffer.members] == [10, 20, 21]

    def test_update_with_nothing_new_changes_nothing(self) -> None:
        buffer = ReplayBuffer(BufferConfig(fraction=0.1))
        buffer.update(range(1, 101), [0] * 100)
        before = buffer.to_state()
        buffer.update(range(1, 101), [0] * 100)
        buffer.update([], [])
        assert buffer.to_state() == before


class TestUpdateArguments:
    def test_update_rejects_lengths_that_differ(self) -> None:
        with pytest.raises(ValueError, match=exact("sample_ids and labels differ in length: 2 != 1")):
            ReplayBuffer(BufferConfig(size=3)).update([1, 2], [0])

    def test_update_rejects_one_id_with_two_labels(self) -> None:
        message = "sample id 7 is given twice with different labels: 0 and 1"
        with pytest.raises(ValueError, match=exact(message)):
            ReplayBuffer(BufferConfig(size=3)).update([7, 7], [0, 1])

    @pytest.mark.parametrize(
        ("ids", "labels", "message"),
        [
            ([-1], [0], "sample id -1 is out of range [0, 2**63)"),
            ([2**63], [0], f"sample id {2**63} is out of range [0, 2**63)"),
            ([1], [-2], "label -2 of sample 1 is negative"),
        ],
    )
    def test_update_rejects_out_of_range_values(self, ids: list[int], labels: list[int], message: str) -> None:
        with pytest.raises(ValueError, match=exact(message)):
            ReplayBuffer(BufferConfig(size=3)).update(ids, labels)

    @pytest.mark.parametrize(
        ("ids", "labels", "message"),
        [
            (["1"], [0], "sample ids must be ints, not str"),
            ([1], [True], "labels must be ints, not bool"),
            ([1.0], [0], "sample ids must be ints, not float"),
        ],
    )
    def test_update_rejects_wrong_types(self, ids: list[Any], labels: list[Any], message: str) -> None:
        with pytest.raises(TypeError, match=exact(message)):
            ReplayBuffer(BufferConfig(size=3)).update(ids, labels)

    def test_update_leaves_the_buffer_unchanged_when_it_rejects_a_batch(self) -> None:
        buffer = ReplayBuffer(BufferConfig(size=3))
        buffer.update([1, 2], [0, 0])
        with pytest.raises(ValueError):
            buffer.update([3, 4], [0, -1])
        assert (buffer.seen, buffer.high_water, buffer.members) == (2, 2, [(1, 0), (2, 0)])

    def test_init_rejects_a_config_that_is_not_a_buffer_config(self) -> None:
        with pytest.raises(TypeError, match=exact("config must be a BufferConfig, not dict")):
            ReplayBuffer({"size": 3})  # type: ignore[arg-type]


class TestRestart:
    @pytest.mark.parametrize("name", sorted(CONFIGS))
    def test_from_state_continues_exactly_as_an_uninterrupted_run(self, name: str) -> None:
        ids, labels = class_incremental_stream()
        cut = 437
        uninterrupted = ReplayBuffer(CONFIGS[name])
        feed(uninterrupted, ids[:cut], labels[:cut], batch=50)
        feed(uninterrupted, ids[cut:], labels[cut:], batch=50)

        restarted = ReplayBuffer(CONFIGS[name])
        feed(restarted, ids[:cut], labels[:cut], batch=50)
        restarted = reload(restarted)
        feed(restarted, ids[cut:], labels[cut:], batch=50)

        assert restarted.members == uninterrupted.members
        assert restarted.to_state() == uninterrupted.to_state()

    @pytest.mark.parametrize("name", sorted(CONFIGS))
    def test_from_state_after_every_update_matches_an_uninterrupted_run(self, name: str) -> None:
        ids, labels = class_incremental_stream(n_labels=5, per_label=100)
        uninterrupted, restarted = ReplayBuffer(CONFIGS[name]), ReplayBuffer(CONFIGS[name])
        for start in range(0, len(ids), 23):
            uninterrupted.update(ids[start : start + 23], labels[start : start + 23])
            restarted.update(ids[start : start + 23], labels[start : start + 23])
            restarted = reload(restarted)
            assert restarted.members == uninterrupted.members

    @pytest.mark.parametrize("name", sorted(CONFIGS))
    def test_from_state_with_the_same_config_continues_exactly(self, name: str) -> None:
        ids, labels = class_incremental_stream(n_labels=5, per_label=100)
        uninterrupted = ReplayBuffer(CONFIGS[name])
        feed(uninterrupted, ids, labels, batch=60)
        restarted = ReplayBuffer(CONFIGS[name])
        feed(restarted, ids[:240], labels[:240], batch=60)
        state = json.loads(json.dumps(restarted.to_state()))
        same = BufferConfig(**CONFIGS[name].__dict__)
        restarted = ReplayBuffer.from_state(state, config=same)
        feed(restarted, ids[240:], labels[240:], batch=60)
        assert restarted.to_state() == uninterrupted.to_state()

    def test_from_state_of_an_empty_buffer_is_empty(self) -> None:
        restored = reload(ReplayBuffer(BufferConfig(fraction=0.1, seed=9)))
        assert (restored.seen, restored.high_water, restored.members) == (0, None, [])
        assert restored.config == BufferConfig(fraction=0.1, seed=9)

    def test_to_state_is_plain_json(self) -> None:
        buffer = ReplayBuffer(BufferConfig(size=3, seed=2))
        buffer.update([1, 2, 3, 4], [0, 0, 1, 1])
        state = buffer.to_state()
        assert json.loads(json.dumps(state)) == state
        assert state["config"] == {
            "policy": "class_balanced", "size": 3, "fraction": None, "min_size": 0, "max_size": None, "seed": 2,
        }
        assert (state["version"], state["seen"], state["high_water"]) == (1, 4, 4)
        assert state["label_seen"] == [[0, 2], [1, 2]]
        assert state["reserve"] == []
        assert [pair for pair in state["members"]] == [list(member) for member in buffer.members]

    def test_from_state_with_a_new_config_applies_it_at_once(self) -> None:
        buffer = ReplayBuffer(BufferConfig(policy="class_balanced", size=10, seed=1))
        buffer.update(range(1, 41), [0] * 20 + [1] * 20)
        smaller = ReplayBuffer.from_state(buffer.to_state(), config=BufferConfig(size=4, seed=1))
        assert smaller.per_label() == {0: 2, 1: 2}
        assert set(smaller.members) < set(buffer.members)
        assert smaller.seen == 40


def _valid_state() -> dict[str, Any]:
    buffer = ReplayBuffer(BufferConfig(policy="class_balanced", fraction=0.25, seed=0))
    buffer.update(range(1, 13), [0] * 6 + [1] * 6)
    state = buffer.to_state()
    assert len(state["members"]) == 3 and len(state["reserve"]) == 9
    return state


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = state
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return change


def _move_member_to_reserve(state: dict[str, Any]) -> None:
    state["reserve"].append(state["members"].pop())


class TestFromState:
    def test_from_state_accepts_its_own_output(self) -> None:
        assert ReplayBuffer.from_state(_valid_state()).to_state() == _valid_state()

    def test_from_state_rejects_a_non_mapping(self) -> None:
        with pytest.raises(ValueError, match=exact("malformed replay buffer state: expected a mapping, got list")):
            ReplayBuffer.from_state([])  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("change", "detail"),
        [
            (lambda s: s.pop("members"), "missing keys: members"),
            (_set("extra", 1), "unknown keys: extra"),
            (_set("version", 2), "unsupported version 2 (this code reads version 1)"),
            (_set("config", None), "config must be a mapping, got NoneType"),
            (lambda s: s["config"].pop("seed"), "config keys must be fraction, max_size, min_size, policy, seed, size, "
             "got fraction, max_size, min_size, policy, size"),
            (_set("config.fraction", 2.0), "config: fraction must be in (0, 1], got 2.0"),
            (_set("config.size", 4), "config: give exactly one of size and fraction"),
            (_set("config.seed", "0"), "config: seed must be an int, not str"),
            (_set("seen", -1), "seen must be a non-negative int, got -1"),
            (_set("seen", "12"), "seen must be a non-negative int, got '12'"),
            (_set("high_water", None), "high_water is None but seen is 12"),
            (_set("high_water", "12"), "high_water must be null or a sample id, got '12'"),
            (_set("label_seen", {"0": 6}), "label_seen must be a list of [int, int] pairs, got dict"),
            (_set("label_seen.0", [0, 6, 1]), "label_seen[0] must be a pair of non-negative ints, got [0, 6, 1]"),
            (_set("label_seen.1", [0, 6]), "label_seen lists label 0 twice"),
            (_set("label_seen.1", [1, 0]), "label_seen count of label 1 is 0"),
            (_set("label_seen.1", [1, 7]), "label_seen counts add up to 13, not seen=12"),
            (_set("members.0", [1]), "members[0] must be a pair of non-negative ints, got [1]"),
            (_set("members.0", [1.0, 0]), "members[0] must be a pair of non-negative ints, got [1.0, 0]"),
            (_set("members", "1,2"), "members must be a list of [int, int] pairs, got str"),
            (_set("members.0.1", 5), "members sample {m0} has label 5, which label_seen does not list"),
            (_set("members.0.0", 13), "members sample 13 is above high_water=12"),
            (lambda s: s["reserve"].append(s["reserve"][0]), "reserve lists sample {r0} twice"),
            (lambda s: s["reserve"].append(s["members"][0]), "sample {m0} is in both members and reserve"),
            (lambda s: s["reserve"].append([13, 0]), "reserve sample 13 is above high_water=12"),
            (_move_member_to_reserve, "members are not the samples this config chooses from members and reserve"),
            (lambda s: s["members"].append(s["reserve"].pop()), "4 members exceed the capacity of 3"),
        ],
    )
    def test_from_state_rejects_malformed_state(self, change: Callable[[dict[str, Any]], None], detail: str) -> None:
        state = _valid_state()
        detail = detail.format(m0=state["members"][0][0], r0=state["reserve"][0][0])
        change(state)
        with pytest.raises(ValueError, match=exact(f"malformed replay buffer state: {detail}")):
            ReplayBuffer.from_state(state)

    def test_from_state_rejects_more_samples_of_a_label_than_seen(self) -> None:
        buffer = ReplayBuffer(BufferConfig(fraction=1.0))
        buffer.update([1, 2, 3], [0, 0, 1])
        state = buffer.to_state()
        state["label_seen"] = [[0, 1], [1, 2]]
        message = "malformed replay buffer state: members and reserve hold 2 samples of label 0, more than the 1 seen"
        with pytest.raises(ValueError, match=exact(message)):
            ReplayBuffer.from_state(state)

    def test_from_state_rejects_a_reserve_with_a_fixed_size(self) -> None:
        buffer = ReplayBuffer(BufferConfig(size=2))
        buffer.update([1, 2, 3], [0, 0, 0])
        state = buffer.to_state()
        state["reserve"] = [[next(i for i in (1, 2, 3) if [i, 0] not in state["members"]), 0]]
        message = "malformed replay buffer state: a buffer with a fixed size keeps no reserve"
        with pytest.raises(ValueError, match=exact(message)):
            ReplayBuffer.from_state(state)


class TestLargeUpdates:
    # Speed is a benchmark matter, not a test assertion; this checks the result at scale.
    @pytest.mark.parametrize("policy", ["reservoir", "class_balanced"])
    def test_update_with_200k_ids_fills_the_fraction_budget(self, policy: str) -> None:
        ids = list(range(1, 100_001))
        labels = [i % 150 for i in ids]
        buffer = ReplayBuffer(BufferConfig(policy=policy, fraction=0.03))  # type: ignore[arg-type]
        buffer.update(ids, labels)
        buffer.update(range(100_001, 200_001), labels)
        assert len(buffer) == 6000
        assert buffer.seen == 200_000


# -- forgetting deleted samples ------------------------------------------------------


@pytest.mark.parametrize("policy", ["class_balanced", "reservoir"])
def test_forgotten_members_leave_and_reserve_samples_take_their_places(policy: str) -> None:
    buffer = ReplayBuffer(BufferConfig(policy=policy, fraction=0.1, min_size=20, max_size=None))
    buffer.update(range(1, 401), [i % 4 for i in range(1, 401)])
    before = {m.sample_id for m in buffer.members}
    gone = sorted(before)[:5]
    assert buffer.forget([*gone, 10_000]) == 5  # an id it never had is ignored
    after = {m.sample_id for m in buffer.members}
    assert not after & set(gone)
    assert len(after) == len(before)  # the reserve refilled the places
    assert buffer.seen == 395  # the forgotten no longer count towards the budget
    # What it persists is a valid state that continues the same buffer.
    restored = ReplayBuffer.from_state(json.loads(json.dumps(buffer.to_state())))
    assert restored.members == buffer.members


def test_forgetting_every_sample_empties_the_buffer() -> None:
    buffer = ReplayBuffer(BufferConfig(size=10))
    buffer.update(range(1, 6), [0, 0, 1, 1, 1])
    assert buffer.forget(range(1, 6)) == 5
    assert (len(buffer), buffer.seen, buffer.high_water) == (0, 0, None)
    assert ReplayBuffer.from_state(buffer.to_state()).members == []
