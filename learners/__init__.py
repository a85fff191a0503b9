"""The continual-learning engine: a growing text classifier trained with Avalanche, on plain data.

Names are loaded on first use (PEP 562): importing ``learners.config`` or
``learners.buffer`` to read settings must not pull in torch and Avalanche, which take
seconds to import.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

# Avalanche imports qpsolvers for GEM, a strategy lifelong does not use; without a QP
# solver installed it warns "no QP solver found" in every process that trains (each
# training worker), which a user cannot act on. Installed here, before any submodule
# imports Avalanche, so the filter is in place in the worker processes too.
warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "BufferConfig": "buffer",
    "BufferMember": "buffer",
    "ReplayBuffer": "buffer",
    "STRATEGY_COMPONENTS": "config",
    "StrategyConfig": "config",
    "Example": "data",
    "encode_texts": "data",
    "make_dataset": "data",
    "pack_batch": "data",
    "LearnerError": "errors",
    "ModelLoadError": "errors",
    "TrainingFailed": "errors",
    # evaluate() itself stays in learners.evaluate: exporting it here would shadow the module.
    "EvaluationReport": "evaluate",
    "accuracy": "evaluate",
    "confusion_counts": "evaluate",
    "forgetting": "evaluate",
    "label_drops": "evaluate",
    "macro_f1": "evaluate",
    "negative_flip_rate": "evaluate",
    "per_label_f1": "evaluate",
    "Predictions": "inference",
    "predict": "inference",
    "LoadedClassifier": "model",
    "TextClassifier": "model",
    "default_base_model": "model",
    "load_base": "model",
    "load_classifier": "model",
    "pick_device": "model",
    "save_classifier": "model",
    "LearnerState": "handoff",
    "Progress": "handoff",
    "ParentState": "train",
    "TrainingResult": "train",
    "TrainingSpec": "train",
    "load_parent_state": "train",
    "train_candidate": "train",
    "TrainingWorker": "worker",
    "remove_partial_outputs": "worker",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'learners' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"learners.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
