"""Read-only summaries of what is stored, for ``lifelong status`` and the metrics gauges."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from storage.errors import StoreUnavailable
from storage.models import ConsumerOffset, DeadLetter, Label

__all__ = ["IngestSummary", "LabelCount", "PartitionState", "SplitCounts", "ingest_summary", "split_counts"]


@dataclass(frozen=True)
class SplitCounts:
    train: int
    held_out: int
    labels: int


@dataclass(frozen=True)
class LabelCount:
    name: str
    samples: int
    held_out: int


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    next_offset: int
    high_watermark: int | None
    updated_at: datetime

    @property
    def lag(self) -> int | None:
        """Records behind the high-watermark as last seen by the daemon."""
        if self.high_watermark is None:
            return None
        return max(0, self.high_watermark - self.next_offset)


@dataclass(frozen=True)
class IngestSummary:
    counts: SplitCounts
    labels: list[LabelCount] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    partitions: list[PartitionState] = field(default_factory=list)


def split_counts(session: Session) -> SplitCounts:
    """Samples by split and the number of labels, from the label table's running counts."""
    table = Label.__table__
    try:
        total, held, labels = session.execute(
            select(
                func.coalesce(func.sum(table.c.sample_count), 0),
                func.coalesce(func.sum(table.c.heldout_count), 0),
                func.count(table.c.id),
            )
        ).one()
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot read sample counts: {exc}") from exc
    return SplitCounts(train=int(total) - int(held), held_out=int(held), labels=int(labels))


def ingest_summary(session: Session) -> IngestSummary:
    """Everything ``lifelong status`` reports about ingestion."""
    labels_table = Label.__table__
    letters = DeadLetter.__table__
    offsets = ConsumerOffset.__table__
    try:
        labels = [
            LabelCount(name, int(samples), int(held))
            for name, samples, held in session.execute(
                select(labels_table.c.name, labels_table.c.sample_count, labels_table.c.heldout_count).order_by(
                    labels_table.c.name
                )
            )
        ]
        dead = {
            reason: int(n)
            for reason, n in session.execute(
                select(letters.c.reason, func.count()).group_by(letters.c.reason).order_by(letters.c.reason)
            )
        }
        partitions = [
            PartitionState(topic, partition, int(next_offset), hw, updated)
            for topic, partition, next_offset, hw, updated in session.execute(
                select(
                    offsets.c.topic, offsets.c.partition, offsets.c.next_offset, offsets.c.high_watermark,
                    offsets.c.updated_at,
                ).order_by(offsets.c.topic, offsets.c.partition)
            )
        ]
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot read ingest summary: {exc}") from exc
    held = sum(label.held_out for label in labels)
    total = sum(label.samples for label in labels)
    return IngestSummary(
        counts=SplitCounts(train=total - held, held_out=held, labels=len(labels)),
        labels=labels,
        dead_letters=dead,
        partitions=partitions,
    )
