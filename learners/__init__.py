"""The continual-learning engine: a growing text classifier trained with Avalanche, on plain data."""

from learners.buffer import BufferConfig, BufferMember, ReplayBuffer
from learners.data import Example, encode_texts, make_dataset, pack_batch
from learners.errors import LearnerError, ModelLoadError, TrainingFailed
# ``evaluate()`` itself stays in learners.evaluate: re-exporting it here would shadow the module.
from learners.evaluate import (
    EvaluationReport,
    accuracy,
    confusion_counts,
    forgetting,
    label_drops,
    macro_f1,
    negative_flip_rate,
    per_label_f1,
)
from learners.inference import Predictions, predict
from learners.model import (
    LoadedClassifier,
    TextClassifier,
    default_base_model,
    load_base,
    load_classifier,
    pick_device,
    save_classifier,
)
from learners.strategies import STRATEGY_COMPONENTS, LearnerState, Progress, StrategyConfig
from learners.train import ParentState, TrainingResult, TrainingSpec, load_parent_state, train_candidate
from learners.worker import TrainingWorker, remove_partial_outputs

__all__ = [
    "STRATEGY_COMPONENTS",
    "BufferConfig",
    "BufferMember",
    "EvaluationReport",
    "Example",
    "LearnerError",
    "LearnerState",
    "LoadedClassifier",
    "ModelLoadError",
    "ParentState",
    "Predictions",
    "Progress",
    "ReplayBuffer",
    "StrategyConfig",
    "TextClassifier",
    "TrainingFailed",
    "TrainingResult",
    "TrainingSpec",
    "TrainingWorker",
    "accuracy",
    "confusion_counts",
    "default_base_model",
    "encode_texts",
    "forgetting",
    "label_drops",
    "load_base",
    "load_classifier",
    "load_parent_state",
    "macro_f1",
    "make_dataset",
    "negative_flip_rate",
    "pack_batch",
    "per_label_f1",
    "pick_device",
    "predict",
    "remove_partial_outputs",
    "save_classifier",
    "train_candidate",
]
