"""Errors raised by ``learners``.

    LearnerError
     ├── ModelLoadError       a model directory is missing, incomplete or not a classifier
     └── TrainingFailed       a training run ended without a candidate (crash, kill, timeout)

Invalid strategy settings are pydantic validation errors (``ValueError``) naming the
field and listing the valid choices.
"""

from __future__ import annotations

__all__ = ["LearnerError", "ModelLoadError", "TrainingFailed"]


class LearnerError(Exception):
    """Root of every error ``learners`` raises."""


class ModelLoadError(LearnerError):
    """The message names the path and what is wrong with it."""


class TrainingFailed(LearnerError):
    """A run ended without a candidate; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"training failed ({reason}): {detail}")
        self.reason = reason
        self.detail = detail
