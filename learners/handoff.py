"""What crosses a process border during and after training: progress reports and learner state.

Kept apart from :mod:`learners.strategies` so that the daemon, which only receives
these, does not import Avalanche (about ten seconds of imports on a small machine,
paid at every start and so on every crash recovery); the training worker, which
builds the strategies, is the only process that loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["LearnerState", "Progress"]


@dataclass(frozen=True)
class Progress:
    """A training progress report."""

    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    examples: int
    examples_per_second: float
    loss: float


@dataclass
class LearnerState:
    """What a strategy must carry from one version to the next: named tensors plus metadata."""

    tensors: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
