"""Pin each package's public names so that a change to them is a deliberate one."""

from __future__ import annotations

import learners
import storage


def test_storage_public_names() -> None:
    assert sorted(storage.__all__) == sorted([
        "Alias", "ArtifactError", "ArtifactNotFound", "ArtifactStore", "Evaluation", "EvaluationRow", "Manifest",
        "ModelVersion", "PromotionDecision", "RegistryError", "StoredExample", "TrainingRun", "files_checksum",
        "BatchResult", "ConsumerOffset", "DeadLetter", "HeldOutPolicy", "IngestSummary", "Label", "LabelCount",
        "NewDeadLetter", "NewSample", "PartitionPosition", "PartitionState", "Sample", "SchemaError", "SplitCounts",
        "StorageError", "StoreUnavailable", "content_hash", "current_revision", "ensure_schema_current",
        "head_revision", "heldout_score", "ingest_summary", "load_offsets", "make_engine", "split_counts", "upgrade",
        "write_ingest_batch",
    ])
    for name in storage.__all__:
        assert hasattr(storage, name), name


def test_learners_public_names() -> None:
    assert sorted(learners.__all__) == sorted([
        "STRATEGY_COMPONENTS", "BufferConfig", "BufferMember", "EvaluationReport", "Example", "LearnerError",
        "LearnerState", "LoadedClassifier", "ModelLoadError", "ParentState", "Predictions", "Progress",
        "ReplayBuffer", "StrategyConfig", "TextClassifier", "TrainingFailed", "TrainingResult", "TrainingSpec",
        "TrainingWorker", "accuracy", "confusion_counts", "default_base_model", "encode_texts",
        "forgetting", "label_drops", "load_base", "load_classifier", "load_parent_state", "macro_f1",
        "make_dataset", "negative_flip_rate", "pack_batch", "per_label_f1", "pick_device", "predict",
        "remove_partial_outputs", "save_classifier", "train_candidate",
    ])
    for name in learners.__all__:
        assert hasattr(learners, name), name


_FORBIDDEN_IN_LEARNERS = {"kafka", "sqlmodel", "sqlalchemy", "fastapi", "prometheus_client", "daemon", "storage"}


def test_learners_imports_no_kafka_sql_http_or_daemon_code() -> None:
    """The learning engine takes plain data; the borders in DESIGN.md section 2 hold."""
    import ast
    from pathlib import Path

    offenders = []
    for path in Path(learners.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in _FORBIDDEN_IN_LEARNERS]
    assert offenders == []
