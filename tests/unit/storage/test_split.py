from __future__ import annotations

import pytest

from storage.split import HeldOutPolicy, content_hash, heldout_score


class TestHeldOutPolicy:
    def test_assign_is_deterministic_and_near_the_fraction(self) -> None:
        policy = HeldOutPolicy(fraction=0.1, min_per_label=10**9)
        first = [policy.assign(f"key-{i}", label_total=0, label_heldout=0) for i in range(20_000)]
        again = [policy.assign(f"key-{i}", label_total=0, label_heldout=0) for i in range(20_000)]
        assert first == again
        assert 0.09 < sum(first) / len(first) < 0.11

    def test_assign_holds_out_a_label_that_has_none_after_min_per_label(self) -> None:
        policy = HeldOutPolicy(fraction=0.1, min_per_label=10)
        key = next(f"k{i}" for i in range(1000) if heldout_score(f"k{i}") >= 0.1)
        assert policy.assign(key, label_total=9, label_heldout=0) is False
        assert policy.assign(key, label_total=10, label_heldout=0) is True
        assert policy.assign(key, label_total=10, label_heldout=1) is False

    def test_assign_zero_fraction_holds_out_nothing(self) -> None:
        policy = HeldOutPolicy(fraction=0.0)
        assert not any(policy.assign(f"k{i}", label_total=50, label_heldout=0) for i in range(100))

    @pytest.mark.parametrize(("fraction", "minimum"), [(1.0, 10), (-0.1, 10), (0.1, 0)])
    def test_policy_rejects_bad_arguments(self, fraction: float, minimum: int) -> None:
        with pytest.raises(ValueError, match="must be"):
            HeldOutPolicy(fraction=fraction, min_per_label=minimum)


class TestContentHash:
    def test_content_hash_separates_text_and_label(self) -> None:
        assert content_hash("ab", "c") != content_hash("a", "bc")
        assert content_hash("ab", "c") == content_hash("ab", "c")
        assert len(content_hash("x", "y")) == 64
