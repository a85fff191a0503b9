"""Writes one ingest batch — samples, dead letters and consumer positions — atomically.

Keeping the consumer position in the same transaction as the data is what makes
ingestion exactly-once into the database: after any crash the stored offsets say
precisely which records are already stored. A replayed record is recognised by its
(topic, partition, offset) and skipped; with content dedupe on, a re-sent record
with the same (text, label) is skipped too.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from storage import locking
from storage.errors import StoreUnavailable
from storage.labels import resolve_aliases
from storage.models import (
    CONTENT_KEY_CHARS,
    ConsumerOffset,
    DeadLetter,
    Label,
    Sample,
    content_key,
    text_key,
    utcnow,
)
from storage.predictions import join_feedback
from storage.split import HeldOutPolicy, content_hash

__all__ = [
    "BatchResult",
    "NewDeadLetter",
    "NewSample",
    "PartitionPosition",
    "StoredLog",
    "load_logs",
    "load_offsets",
    "start_new_log",
    "stored_hashes",
    "write_ingest_batch",
]

logger = logging.getLogger(__name__)

_IN_CHUNK = 500  # keeps IN (...) lists under every backend's parameter limit


@dataclass(slots=True)
class NewSample:
    """A validated record, ready to store (built per record on the ingest hot path: not frozen)."""

    topic: str
    partition: int
    offset: int
    text: str
    label: str
    content_hash: str
    external_id: str | None = None
    event_ts: datetime | None = None
    meta: dict[str, Any] | None = None

    @property
    def split_key(self) -> str:
        return self.external_id if self.external_id is not None else self.content_hash


@dataclass(frozen=True)
class NewDeadLetter:
    """A record that failed validation; ``raw`` is already truncated."""

    topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    raw: bytes | None
    raw_size: int


@dataclass(frozen=True)
class PartitionPosition:
    """Where the consumer stands in one partition after this batch."""

    topic: str
    partition: int
    next_offset: int
    high_watermark: int | None = None
    #: The broker's id of the topic read (``None`` when the broker does not say).
    topic_id: str | None = None
    #: Added to this log's offsets in stored positions (see :class:`ConsumerOffset`).
    offset_base: int = 0


@dataclass(frozen=True)
class StoredLog:
    """What the database knows of one partition's log: where to resume and which log it was."""

    next_offset: int
    offset_base: int
    topic_id: str | None


@dataclass
class BatchResult:
    """What one batch changed; the caller turns it into metrics and logs."""

    stored: int = 0
    held_out: int = 0
    duplicate_position: int = 0
    duplicate_content: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    new_labels: list[str] = field(default_factory=list)
    #: Records whose id matched a logged prediction (joined as its true label; stored or a duplicate).
    feedback: int = 0
    #: Stored samples deleted because the same text arrived again with another label.
    superseded: int = 0


def load_offsets(session: Session, *, topics: Iterable[str] | None = None) -> dict[tuple[str, int], int]:
    """The stored next offset for every known partition (of ``topics``, if given)."""
    return {key: log.next_offset for key, log in load_logs(session, topics).items()}


def load_logs(session: Session, topics: Iterable[str] | None = None) -> dict[tuple[str, int], StoredLog]:
    """Every stored partition (of ``topics``, if given) with its resume offset, offset base and topic id."""
    table = ConsumerOffset.__table__
    query = select(table.c.topic, table.c.partition, table.c.next_offset, table.c.offset_base, table.c.topic_id)
    if topics is not None:
        query = query.where(table.c.topic.in_(list(topics)))
    try:
        rows = session.execute(query).all()
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot read stored offsets: {exc}") from exc
    return {(topic, partition): StoredLog(offset, base, topic_id) for topic, partition, offset, base, topic_id in rows}


def start_new_log(session: Session, topic: str, topic_id: str) -> dict[int, int]:
    """Take ``topic`` as a new log (it was recreated): resume every partition at 0, past the old positions.

    Each partition's new base is the old base plus the old log's next offset, which lies past
    every position stored from the old log, so the new log's records are never mistaken for
    replays of the old one's. Returns the new base per partition; committed here.
    """
    table = ConsumerOffset.__table__
    try:
        rows = session.execute(select(table.c.partition, table.c.next_offset, table.c.offset_base)
                               .where(table.c.topic == topic)).all()
        bases = {partition: base + offset for partition, offset, base in rows}
        for partition, base in bases.items():
            session.execute(update(table).where(and_(table.c.topic == topic, table.c.partition == partition))
                            .values(next_offset=0, offset_base=base, topic_id=topic_id, high_watermark=None,
                                    updated_at=utcnow()))
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise StoreUnavailable(f"cannot record the new log of topic {topic}: {exc}") from exc
    return bases


def _stored_positions(session: Session, table: Any, records: Sequence[Any]) -> set[tuple[str, int, int]]:
    bounds: dict[tuple[str, int], list[int]] = {}
    for record in records:
        low_high = bounds.setdefault((record.topic, record.partition), [record.offset, record.offset])
        low_high[0] = min(low_high[0], record.offset)
        low_high[1] = max(low_high[1], record.offset)
    found: set[tuple[str, int, int]] = set()
    for (topic, partition), (low, high) in bounds.items():
        query = select(table.c.offset).where(
            and_(table.c.topic == topic, table.c.partition == partition, table.c.offset.between(low, high))
        )
        found.update((topic, partition, offset) for (offset,) in session.execute(query))
    return found


def stored_hashes(session: Session, hashes: Sequence[str]) -> set[str]:
    """Which of ``hashes`` some stored sample already has.

    Looked up through the prefix index (:func:`storage.models.content_key`); a prefix
    shared by two different hashes is told apart by the full-hash comparison here.
    """
    column = Sample.__table__.c.content_hash  # type: ignore[attr-defined]
    wanted = set(hashes)
    prefixes = sorted({h[:CONTENT_KEY_CHARS] for h in wanted})
    found: set[str] = set()
    for start in range(0, len(prefixes), _IN_CHUNK):
        query = select(column).where(content_key(column).in_(prefixes[start : start + _IN_CHUNK]))
        found.update(h for (h,) in session.execute(query) if h in wanted)
    return found


def _label_rows(session: Session, names: Sequence[str]) -> tuple[dict[str, list[int]], list[str]]:
    """Label name -> [id, sample_count, heldout_count], creating labels never seen before."""
    table = Label.__table__
    query = select(table.c.name, table.c.id, table.c.sample_count, table.c.heldout_count)
    rows = {name: [id_, total, held] for name, id_, total, held in session.execute(query.where(table.c.name.in_(names)))}
    missing = [name for name in names if name not in rows]
    if missing:
        now = utcnow()
        session.execute(
            insert(table), [{"name": n, "sample_count": 0, "heldout_count": 0, "first_seen_at": now} for n in missing]
        )
        created = session.execute(query.where(table.c.name.in_(missing)))
        rows.update({name: [id_, total, held] for name, id_, total, held in created})
    return rows, missing


def _upsert_positions(session: Session, positions: Sequence[PartitionPosition]) -> None:
    if not positions:
        return
    dialect = session.get_bind().dialect.name
    table = ConsumerOffset.__table__
    now = utcnow()
    values = [
        {
            "topic": p.topic,
            "partition": p.partition,
            "next_offset": p.next_offset,
            "high_watermark": p.high_watermark,
            "topic_id": p.topic_id,
            "offset_base": p.offset_base,
            "updated_at": now,
        }
        for p in positions
    ]
    if dialect in ("sqlite", "postgresql"):
        dialect_insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        statement = dialect_insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.topic, table.c.partition],
            set_={
                "next_offset": statement.excluded.next_offset,
                "high_watermark": statement.excluded.high_watermark,
                # A broker that names no topic id keeps the one recorded.
                "topic_id": func.coalesce(statement.excluded.topic_id, table.c.topic_id),
                "offset_base": statement.excluded.offset_base,
                "updated_at": statement.excluded.updated_at,
            },
        )
        session.execute(statement, values)
        return
    raise StoreUnavailable(f"unsupported database dialect {dialect!r}")  # pragma: no cover


_UNSET = object()

#: Column order of the sample rows built per batch (tuples: no dict per record).
_SAMPLE_COLUMNS = ("external_id", "text", "label_id", "topic", "partition", "offset", "content_hash", "held_out",
                   "event_ts", "meta", "ingested_at", "feedback", "text_key")


def _insert_rows(session: Session, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """INSERT many rows; on SQLite straight through the driver's executemany.

    SQLAlchemy's compiled executemany builds and processes a parameter dict per row,
    about a tenth of ingest time at tens of thousands of records per second. On SQLite
    the rows go to ``cursor.executemany`` as tuples instead, each value passed through
    the column type's own bind processor (the same conversion SQLAlchemy applies, so
    timestamps and JSON are stored identically). Other backends keep the Core path,
    whose insertmanyvalues batching is already fast there.
    """
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite":
        session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    processors = [(i, processor) for i, name in enumerate(columns)
                  if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None]
    if processors:
        # Most processed values repeat from row to row (the batch's one ingest time, NULL
        # timestamps and meta), so each column remembers its last input and output.
        last: list[tuple[Any, Any]] = [(_UNSET, None)] * len(columns)
        converted = []
        for row in rows:
            values = list(row)
            for i, processor in processors:
                value = values[i]
                seen, out = last[i]
                if value is not seen:
                    out = processor(value)
                    last[i] = (value, out)
                values[i] = out
            converted.append(tuple(values))
        rows = converted
    quote = dialect.identifier_preparer.quote
    statement = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
                 f"VALUES ({', '.join('?' for _ in columns)})")
    connection.exec_driver_sql(statement, rows)


def _supersede(session: Session, result: BatchResult,
               fresh: list[NewSample]) -> tuple[list[NewSample], list[str | None]]:
    """Drop earlier same-text records of the batch, delete stored samples of the same text under
    another label, and return the samples to store with their text keys."""
    keys = [text_key(sample.text) for sample in fresh]
    final: dict[tuple[str, str], str] = {}  # (key, text) -> the label of its last record in the batch
    for sample, key in zip(fresh, keys, strict=True):
        final[(key, sample.text)] = sample.label
    keep = [i for i, (sample, key) in enumerate(zip(fresh, keys, strict=True))
            if final[(key, sample.text)] == sample.label]
    result.superseded += len(fresh) - len(keep)
    fresh, keys = [fresh[i] for i in keep], [keys[i] for i in keep]
    table = Sample.__table__
    label_table = Label.__table__
    stale: list[tuple[int, int, bool]] = []
    ordered = sorted(set(keys))
    for start in range(0, len(ordered), _IN_CHUNK):
        query = (select(table.c.id, table.c.text_key, table.c.text, table.c.label_id, table.c.held_out,
                        label_table.c.name)
                 .join(label_table, label_table.c.id == table.c.label_id)
                 .where(table.c.text_key.in_(ordered[start: start + _IN_CHUNK])))
        for sample_id, key, text, label_id, held_out, name in session.execute(query):
            label = final.get((key, text))
            if label is not None and label != name:
                stale.append((sample_id, label_id, held_out))
    if stale:
        for start in range(0, len(stale), _IN_CHUNK):
            chunk = [row[0] for row in stale[start: start + _IN_CHUNK]]
            session.execute(delete(table).where(table.c.id.in_(chunk)))
        per_label = Counter(row[1] for row in stale)
        held = Counter(row[1] for row in stale if row[2])
        for label_id, n in per_label.items():
            session.execute(update(label_table).where(label_table.c.id == label_id).values(
                sample_count=label_table.c.sample_count - n,
                heldout_count=label_table.c.heldout_count - held.get(label_id, 0)))
        result.superseded += len(stale)
    return fresh, list(keys)


def write_ingest_batch(
    session: Session,
    *,
    samples: Sequence[NewSample],
    dead_letters: Sequence[NewDeadLetter],
    positions: Sequence[PartitionPosition],
    policy: HeldOutPolicy,
    dedupe_content: bool,
    supersede: bool = False,
) -> BatchResult:
    """Store a batch and advance the consumer positions in one transaction.

    With ``supersede``, a text stored before under another label is deleted when it
    arrives again (the newer label is the truth, not a contradiction to train on), and
    within the batch the last record of a text wins.

    The caller owns nothing afterwards: on success everything is committed; on any
    database error nothing is, and :class:`StoreUnavailable` is raised so the caller
    can retry the same batch without its positions having moved.
    """
    result = BatchResult()
    try:
        with session.begin():
            _write(session, result, samples, dead_letters, positions, policy, dedupe_content, supersede)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"ingest batch not stored: {exc.__class__.__name__}: {exc}") from exc
    return result


def _write(
    session: Session,
    result: BatchResult,
    samples: Sequence[NewSample],
    dead_letters: Sequence[NewDeadLetter],
    positions: Sequence[PartitionPosition],
    policy: HeldOutPolicy,
    dedupe_content: bool,
    supersede: bool = False,
) -> None:
    # Another daemon of the group may store the same content at this moment: on SQLite what
    # is read below then still holds at the commit. PostgreSQL keeps daemons' batches
    # parallel instead, so there two daemons can store one re-sent record at the same
    # instant (positions stay unique by constraint; content dedupe is best effort).
    locking.begin_write(session)
    seen_positions = _stored_positions(session, Sample.__table__, samples) if samples else set()
    if dead_letters:
        seen_positions |= _stored_positions(session, DeadLetter.__table__, dead_letters)

    fresh: list[NewSample] = []
    for sample in samples:
        if (sample.topic, sample.partition, sample.offset) in seen_positions:
            result.duplicate_position += 1
        else:
            fresh.append(sample)
    # A record whose id is a logged prediction's request id is the truth about that answer,
    # joined even when its text and label are stored already (then it is not stored again).
    renamed = resolve_aliases(session, sorted({s.label for s in fresh}))
    if renamed:  # a name renamed or merged away: store under the label it became
        for sample in fresh:
            if sample.label in renamed:
                sample.label = renamed[sample.label]
                sample.content_hash = content_hash(sample.text, sample.label)
    feedback = join_feedback(session, {s.external_id: s.label for s in fresh if s.external_id})
    result.feedback = len(feedback)
    if dedupe_content and fresh:
        known = stored_hashes(session, [s.content_hash for s in fresh])
        unique: list[NewSample] = []
        for sample in fresh:
            if sample.content_hash in known:
                result.duplicate_content += 1
            else:
                known.add(sample.content_hash)
                unique.append(sample)
        fresh = unique

    # Keys are stored even with supersede off, so that turning it on later covers every sample.
    if supersede and fresh:
        fresh, keys = _supersede(session, result, fresh)
    else:
        keys = [text_key(sample.text) for sample in fresh]

    if fresh:
        labels, result.new_labels = _label_rows(session, sorted({s.label for s in fresh}))
        added: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        rows: list[tuple[Any, ...]] = []
        now = utcnow()
        held_total = 0
        for sample, key in zip(fresh, keys, strict=True):
            label_id, total, held = labels[sample.label]
            held_out = policy.assign(sample.split_key, label_total=total, label_heldout=held)
            labels[sample.label][1] += 1
            labels[sample.label][2] += int(held_out)
            added[sample.label][0] += 1
            added[sample.label][1] += int(held_out)
            held_total += int(held_out)
            # In _SAMPLE_COLUMNS order.
            rows.append((sample.external_id, sample.text, label_id, sample.topic, sample.partition, sample.offset,
                         sample.content_hash, held_out, sample.event_ts, sample.meta, now,
                         sample.external_id in feedback, key))
        _insert_rows(session, Sample.__table__, _SAMPLE_COLUMNS, rows)
        label_table = Label.__table__
        # One executemany for all labels of the batch, not one statement per label.
        session.execute(
            update(label_table)
            .where(label_table.c.id == bindparam("label_id"))
            .values(
                sample_count=label_table.c.sample_count + bindparam("added_samples"),
                heldout_count=label_table.c.heldout_count + bindparam("added_heldout"),
            ),
            [
                {"label_id": labels[name][0], "added_samples": count, "added_heldout": held_count}
                for name, (count, held_count) in added.items()
            ],
        )
        result.stored = len(rows)
        result.held_out = held_total

    letters = [d for d in dead_letters if (d.topic, d.partition, d.offset) not in seen_positions]
    result.duplicate_position += len(dead_letters) - len(letters)
    if letters:
        now = utcnow()
        session.execute(
            insert(DeadLetter.__table__),
            [
                {
                    "topic": d.topic,
                    "partition": d.partition,
                    "offset": d.offset,
                    "reason": d.reason,
                    "detail": d.detail,
                    "raw": d.raw,
                    "raw_size": d.raw_size,
                    "created_at": now,
                }
                for d in letters
            ],
        )
        result.dead_letters.update(d.reason for d in letters)

    _upsert_positions(session, positions)
