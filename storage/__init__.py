"""Persistence for lifelong: tables, migrations, repositories."""

from storage.artifacts import ArtifactError, ArtifactNotFound, ArtifactStore, Manifest, files_checksum
from storage.engine import current_revision, ensure_schema_current, head_revision, make_engine, upgrade
from storage.errors import SchemaError, StorageError, StoreUnavailable
from storage.ingest_store import (
    BatchResult,
    NewDeadLetter,
    NewSample,
    PartitionPosition,
    load_offsets,
    write_ingest_batch,
)
from storage.models import (
    Alias,
    ConsumerOffset,
    DeadLetter,
    Evaluation,
    Label,
    ModelVersion,
    PromotionDecision,
    Sample,
    TrainingRun,
)
from storage.registry import EvaluationRow, RegistryError
from storage.samples import StoredExample
from storage.split import HeldOutPolicy, content_hash, heldout_score
from storage.stats import IngestSummary, LabelCount, PartitionState, SplitCounts, ingest_summary, split_counts

__all__ = [
    "Alias",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactStore",
    "Evaluation",
    "EvaluationRow",
    "Manifest",
    "ModelVersion",
    "PromotionDecision",
    "RegistryError",
    "StoredExample",
    "TrainingRun",
    "files_checksum",
    "BatchResult",
    "ConsumerOffset",
    "DeadLetter",
    "HeldOutPolicy",
    "IngestSummary",
    "Label",
    "LabelCount",
    "NewDeadLetter",
    "NewSample",
    "PartitionPosition",
    "PartitionState",
    "Sample",
    "SchemaError",
    "SplitCounts",
    "StorageError",
    "StoreUnavailable",
    "content_hash",
    "current_revision",
    "ensure_schema_current",
    "head_revision",
    "heldout_score",
    "ingest_summary",
    "load_offsets",
    "make_engine",
    "split_counts",
    "upgrade",
    "write_ingest_batch",
]
