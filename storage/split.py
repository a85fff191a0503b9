"""Deterministic train / held-out assignment.

A sample is held out when a hash of its key (the record's ``id``, else its content
hash) falls under ``fraction``, so the same record lands on the same side on every
restart, re-ingestion or replica. Pure hashing leaves a rare label with no held-out
example (10 samples at 10%: 35% of the time), and a label that cannot be evaluated
cannot be protected from forgetting; so once a label has ``min_per_label`` samples
and still none held out, its next sample is held out. That correction depends on
the order samples arrive in, which is the log order of their partition.

>>> policy = HeldOutPolicy(fraction=0.1, min_per_label=10)
>>> policy.assign("record-1", label_total=0, label_heldout=0) == policy.assign("record-1", label_total=0, label_heldout=0)
True
>>> policy.assign("anything", label_total=10, label_heldout=0)
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["HeldOutPolicy", "content_hash", "heldout_score"]


def content_hash(text: str, label: str) -> str:
    """SHA-256 hex of a (text, label) pair: the dedupe key and the fallback split key."""
    return hashlib.sha256(label.encode("utf-8") + b"\x1f" + text.encode("utf-8")).hexdigest()


_HELDOUT_SALT = hashlib.sha256(b"lifelong-heldout\x00")


def heldout_score(key: str) -> float:
    """A uniform number in [0, 1) fixed by ``key``."""
    hasher = _HELDOUT_SALT.copy()  # the salt is hashed once; per key only the key is
    hasher.update(key.encode("utf-8"))
    return int.from_bytes(hasher.digest()[:8], "big") / 2**64


@dataclass(frozen=True)
class HeldOutPolicy:
    """Decides once, at ingest, whether a sample is held out from training."""

    fraction: float = 0.1
    min_per_label: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError(f"fraction must be in [0, 1), got {self.fraction}")
        if self.min_per_label < 1:
            raise ValueError(f"min_per_label must be at least 1, got {self.min_per_label}")

    def assign(self, key: str, *, label_total: int, label_heldout: int) -> bool:
        """Whether the sample with split key ``key`` is held out.

        ``label_total`` and ``label_heldout`` count the label's samples stored before this one.
        """
        if self.fraction == 0.0:
            return False
        if heldout_score(key) < self.fraction:
            return True
        return label_heldout == 0 and label_total >= self.min_per_label
