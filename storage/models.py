"""SQLModel tables: ingested data, and the model registry built on it.

Every change here needs an Alembic migration in ``storage/migrations/versions``;
``tests/unit/storage/test_migrations.py`` fails when the two drift apart.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    Text,
    UniqueConstraint,
    false,
    func,
    literal_column,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, SQLModel

__all__ = [
    "CONTENT_KEY_CHARS",
    "Alias",
    "ConsumerOffset",
    "DataDeletion",
    "DeadLetter",
    "Evaluation",
    "Label",
    "LabelChange",
    "ModelVersion",
    "PromotionDecision",
    "Sample",
    "TrainingLease",
    "TrainingRun",
    "content_key",
    "text_key",
    "utcnow",
]


def utcnow() -> datetime:
    """Timezone-aware now; a function so defaults are computed per row, not at import."""
    return datetime.now(timezone.utc)


def _ts_column(**kwargs: Any) -> Any:
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True), **kwargs)


class Label(SQLModel, table=True):
    """A class name seen in the stream; ``id`` is stable for the life of the database."""

    __tablename__ = "label"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=1000, unique=True, index=True)
    #: Running counts kept in the ingest transaction, so the held-out policy and
    #: ``lifelong status`` never need to scan the sample table.
    sample_count: int = Field(default=0, sa_type=BigInteger)
    heldout_count: int = Field(default=0, sa_type=BigInteger)
    first_seen_at: datetime = _ts_column()
    #: A name renamed or merged away: records that still carry it are stored under this label.
    #: (A label id; no foreign key, which SQLite could only add by rebuilding the table.)
    alias_of: int | None = Field(default=None)
    #: Retired: no longer predicted or trained on; its samples stay, for audit.
    retired_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class LabelChange(SQLModel, table=True):
    """One label administration step (rename, merge, retire), who asked and why."""

    __tablename__ = "label_change"

    id: int | None = Field(default=None, primary_key=True)
    #: rename, merge, retire
    kind: str = Field(max_length=16)
    sources: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    target: str | None = Field(default=None, max_length=1000)
    actor: str = Field(max_length=200)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    samples: int = Field(default=0, sa_type=BigInteger)
    #: The version production became, its head changed the same way (None before any model).
    version: str | None = Field(default=None, max_length=32)
    created_at: datetime = _ts_column()


class Sample(SQLModel, table=True):
    """One valid labeled text, stored once per (topic, partition, offset).

    ``id`` grows with ingestion order, so a model version's data watermark can be a
    sample id. ``held_out`` is decided once at ingest and never changes.
    """

    __tablename__ = "sample"
    __table_args__ = (
        UniqueConstraint("topic", "partition", "offset", name="uq_sample_position"),
        Index("ix_sample_label_split", "label_id", "held_out"),
    )

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, max_length=1000)
    text: str = Field(sa_column=Column(Text, nullable=False))
    label_id: int = Field(foreign_key="label.id")
    topic: str = Field(max_length=255)
    partition: int
    offset: int = Field(sa_type=BigInteger)
    content_hash: str = Field(max_length=64)
    held_out: bool = False
    event_ts: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    ingested_at: datetime = _ts_column()
    #: Its ``id`` matched a logged prediction: the label is feedback on a served answer.
    feedback: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    #: First 16 hex characters of SHA-256 of the text alone, when ``ingest.relabeled_text`` is
    #: ``supersede``: a re-sent text with another label finds the sample it replaces by it.
    text_key: str | None = Field(default=None, max_length=16)


#: Hex characters of the content hash that the dedupe index holds (64 bits).
CONTENT_KEY_CHARS = 16


def content_key(column: Any) -> ColumnElement[str]:
    """The indexed prefix of a content hash column: ``substr(content_hash, 1, 16)``.

    Content dedupe looks samples up by this prefix and compares the full hash after.
    An index over the whole 64-character hex hash is four times larger, and its random
    keys made it the most expensive part of storing a sample. The positions are literal
    SQL, not bound parameters: a query matches an expression index only when it spells
    the same expression.
    """
    return func.substr(column, literal_column("1"), literal_column(str(CONTENT_KEY_CHARS)))


Index("ix_sample_content_key", content_key(Sample.__table__.c.content_hash))  # type: ignore[attr-defined]
#: Partial: with supersede off no row has a key, and the index costs ingestion nothing.
Index("ix_sample_text_key", Sample.__table__.c.text_key,  # type: ignore[attr-defined]
      sqlite_where=Sample.__table__.c.text_key.is_not(None),  # type: ignore[attr-defined]
      postgresql_where=Sample.__table__.c.text_key.is_not(None))  # type: ignore[attr-defined]


def text_key(text: str) -> str:
    """The indexed key of a text alone (see ``Sample.text_key``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class DeadLetter(SQLModel, table=True):
    """A record that could not be stored as a sample, with the reason and its first bytes."""

    __tablename__ = "dead_letter"
    __table_args__ = (UniqueConstraint("topic", "partition", "offset", name="uq_dead_letter_position"),)

    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=255)
    partition: int
    offset: int = Field(sa_type=BigInteger)
    reason: str = Field(max_length=64, index=True)
    detail: str = Field(sa_column=Column(Text, nullable=False))
    raw: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    raw_size: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = _ts_column()


class ConsumerOffset(SQLModel, table=True):
    """The next offset to read per partition: the consumer's position, kept with the data."""

    __tablename__ = "consumer_offset"

    topic: str = Field(primary_key=True, max_length=255)
    partition: int = Field(primary_key=True)
    next_offset: int = Field(sa_type=BigInteger)
    #: The partition's fetch high-watermark when last seen; lag = high_watermark - next_offset.
    high_watermark: int | None = Field(default=None, sa_type=BigInteger)
    #: The broker's id of the topic these offsets were read from (Kafka topic ids, metadata v10+):
    #: a different id means the topic was deleted and created again, or a memory-only broker
    #: restarted empty, and these offsets belong to a log that no longer exists.
    topic_id: str | None = Field(default=None, max_length=36)
    #: Where this log's offset 0 lies among the positions stored for the partition: samples and
    #: dead letters store ``offset_base + offset``, so a recreated topic's records never collide
    #: with the old log's (0 until a topic is first recreated).
    offset_base: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    updated_at: datetime = _ts_column()


class TrainingRun(SQLModel, table=True):
    """One retrain attempt, whatever its end: its trigger, each step's outcome and timing."""

    __tablename__ = "training_run"

    id: int | None = Field(default=None, primary_key=True)
    trigger: str = Field(max_length=32, index=True)
    requested_by: str | None = Field(default=None, max_length=200)
    #: running, succeeded (a candidate was trained and decided on), skipped, failed
    status: str = Field(default="running", max_length=16, index=True)
    #: promoted / rejected once a candidate was decided on
    outcome: str | None = Field(default=None, max_length=16)
    error_reason: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    parent_version: str | None = Field(default=None, max_length=32)
    candidate_version: str | None = Field(default=None, max_length=32)
    train_examples: int = 0
    replay_examples: int = 0
    #: Highest sample id the run's snapshot covered; the volume trigger counts samples after it.
    data_up_to: int | None = Field(default=None, sa_type=BigInteger)
    #: [{"step": "train", "status": "ok", "seconds": 12.3, "detail": ...}, ...]
    steps: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    started_at: datetime = _ts_column()
    finished_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class ModelVersion(SQLModel, table=True):
    """A trained candidate and its lineage; promoted or not, it stays until retention prunes it."""

    __tablename__ = "model_version"

    name: str = Field(primary_key=True, max_length=32)
    parent: str | None = Field(default=None, max_length=32)
    run_id: int | None = Field(default=None, foreign_key="training_run.id")
    generation: int = 1
    strategy: str = Field(max_length=32)
    hyperparameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    #: Highest sample id the lineage has trained on; the next candidate trains on ids above it.
    data_watermark: int = Field(default=0, sa_type=BigInteger)
    labels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    buffer_members: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    buffer_state: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    artifact_path: str = Field(max_length=1000)
    checksum: str = Field(max_length=64)
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts_column()
    #: Training samples this version's weights learned from (itself or through its
    #: ancestors) that ``lifelong data forget`` has since removed. Non-zero means the model
    #: may still reflect data its owners asked to forget; a clean rebuild resets it.
    forgotten_samples: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})


class DataDeletion(SQLModel, table=True):
    """One deletion of stored data, for audit: a forget request, or a retention pass.

    The deleted rows are gone; this row keeps who asked, why, by which criteria, and how
    many rows of each kind went, so an operator can show that a request was carried out.
    """

    __tablename__ = "data_deletion"

    id: int | None = Field(default=None, primary_key=True)
    #: forget (an operator's request) or retention (``ingest.retention_days``)
    cause: str = Field(max_length=16, index=True)
    actor: str = Field(default="retention", max_length=200)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    #: {"ids": [...], "before": "...", "meta": {...}} as asked
    criteria: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    samples: int = Field(default=0, sa_type=BigInteger)
    heldout_samples: int = Field(default=0, sa_type=BigInteger)
    predictions: int = Field(default=0, sa_type=BigInteger)
    dead_letters: int = Field(default=0, sa_type=BigInteger)
    #: Model versions whose weights learned from a deleted training sample.
    versions_affected: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts_column()


class PredictionRecord(SQLModel, table=True):
    """One text answered by ``/v1/predict``: what the serving version said, and later the truth.

    ``true_label`` is filled when a labeled record with the same ``id`` as ``request_id``
    arrives on the topic, which gives production's accuracy on live traffic. The text is
    kept only with ``serving.log_texts``; its hash always (to count repeats, not to read them).
    """

    __tablename__ = "prediction"
    #: Live accuracy counts a version's joined answers: only those rows are read.
    __table_args__ = (Index("ix_prediction_version_joined", "version", "true_label"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(max_length=128, index=True)
    version: str = Field(max_length=32)
    label: str | None = Field(default=None, max_length=1000)
    confidence: float
    abstained: bool = False
    text_hash: str = Field(max_length=64)
    text: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts_column(index=True)
    true_label: str | None = Field(default=None, max_length=1000)
    joined_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Evaluation(SQLModel, table=True):
    """One metric of one model version on one evaluation set, in one run."""

    __tablename__ = "evaluation"
    __table_args__ = (
        UniqueConstraint("run_id", "version", "eval_set", "metric", "label", name="uq_evaluation_cell"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="training_run.id", index=True)
    version: str = Field(foreign_key="model_version.name", max_length=32, index=True)
    eval_set: str = Field(max_length=32)
    metric: str = Field(max_length=32)
    #: Per-label metrics name their label; set-level metrics use "".
    label: str = Field(default="", max_length=1000)
    value: float
    n: int = 0
    created_at: datetime = _ts_column()


class PromotionDecision(SQLModel, table=True):
    """Why production moved, or did not: the gate's checks or the operator's reason."""

    __tablename__ = "promotion_decision"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="training_run.id")
    candidate: str = Field(max_length=32, index=True)
    production_before: str | None = Field(default=None, max_length=32)
    #: promoted, rejected, forced, rolled_back
    outcome: str = Field(max_length=16)
    forced: bool = False
    actor: str = Field(default="gate", max_length=200)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    checks: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts_column()
    #: When the promotion event of a decision that moved production reached the broker;
    #: NULL until then (the trainer delivers such events again after a crash: an outbox).
    event_sent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Alias(SQLModel, table=True):
    """``production`` and ``previous``: which version serves, and which a rollback restores."""

    __tablename__ = "alias"

    name: str = Field(primary_key=True, max_length=32)
    version: str = Field(foreign_key="model_version.name", max_length=32)
    updated_at: datetime = _ts_column()


class TrainingLease(SQLModel, table=True):
    """Who may train. One row per lease name; the holder renews it before ``expires_at_ms``.

    Times are Unix milliseconds (integers compare the same in every database); a lease
    whose expiry has passed may be taken over by anyone (storage.lease).
    """

    __tablename__ = "training_lease"

    name: str = Field(primary_key=True, max_length=32)
    holder: str | None = Field(default=None, max_length=200)
    acquired_at_ms: int = Field(default=0, sa_type=BigInteger)
    expires_at_ms: int = Field(default=0, sa_type=BigInteger)
