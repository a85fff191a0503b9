"""SQLModel tables for ingested data.

Every change here needs an Alembic migration in ``storage/migrations/versions``;
``tests/unit/storage/test_migrations.py`` fails when the two drift apart.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = ["ConsumerOffset", "DeadLetter", "Label", "Sample", "utcnow"]


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
    external_id: str | None = Field(default=None, max_length=1000, index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    label_id: int = Field(foreign_key="label.id")
    topic: str = Field(max_length=255)
    partition: int
    offset: int = Field(sa_type=BigInteger)
    content_hash: str = Field(max_length=64, index=True)
    held_out: bool = False
    event_ts: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    ingested_at: datetime = _ts_column()


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
    updated_at: datetime = _ts_column()
