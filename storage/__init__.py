"""Persistence for lifelong: tables, migrations, repositories."""

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
from storage.models import ConsumerOffset, DeadLetter, Label, Sample
from storage.split import HeldOutPolicy, content_hash, heldout_score
from storage.stats import IngestSummary, LabelCount, PartitionState, SplitCounts, ingest_summary, split_counts

__all__ = [
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
