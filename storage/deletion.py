"""Deleting stored data: an operator's forget request, and the retention pass.

Both remove samples (and the rows that repeat their content: logged predictions with
the same id) and keep the label counts right, in the same transaction as the delete.
A forget request is one transaction: it applies whole or not at all, and it records
which model versions learned from a removed training sample (their weights may still
reflect it; ``ModelVersion.forgotten_samples``). Retention deletes in bounded batches,
each its own short transaction, so ingestion never waits behind one huge delete.

Removed samples also leave every replay buffer: ``ModelVersion.buffer_members`` loses
them here, and the next training run drops from its parent's buffer whatever no longer
exists (``missing_sample_ids``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlmodel import Session

from storage.errors import StorageError
from storage.models import DataDeletion, DeadLetter, Label, ModelVersion, PredictionRecord, Sample

__all__ = ["DeletionReport", "ForgetCriteria", "UnknownIds", "database_counts", "deletions", "expire_batch", "forget",
           "forgets_since", "missing_sample_ids"]

_IN_CHUNK = 500
_SAMPLE = Sample.__table__  # type: ignore[attr-defined]
_PREDICTION = PredictionRecord.__table__  # type: ignore[attr-defined]
_DEAD_LETTER = DeadLetter.__table__  # type: ignore[attr-defined]


class UnknownIds(StorageError):
    """A forget request named ids that match no stored sample or prediction; nothing was deleted."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:10]) + (f" and {len(self.ids) - 10} more" if len(ids) > 10 else "")
        super().__init__(f"no stored sample or prediction has id {shown}; nothing was deleted")


@dataclass(frozen=True)
class ForgetCriteria:
    """Which samples to forget. Criteria given together must all match (each narrows).

    ``ids`` match the producer's ``id`` field (a sample) and the ``id`` of a logged
    prediction; ``before`` matches samples stored before that moment; ``meta`` matches
    samples whose ``meta`` has each key with exactly that string value.
    """

    ids: tuple[str, ...] = ()
    before: datetime | None = None
    meta: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not (self.ids or self.before or self.meta):
            raise ValueError("a forget request needs at least one of ids, before or meta")
        if self.before is not None and self.before.tzinfo is None:
            raise ValueError("'before' must carry a timezone (e.g. 2026-01-01T00:00:00+00:00)")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ids:
            out["ids"] = list(self.ids)
        if self.before is not None:
            out["before"] = self.before.isoformat()
        if self.meta:
            out["meta"] = dict(self.meta)
        return out


@dataclass
class DeletionReport:
    """What one deletion removed."""

    samples: int = 0
    heldout_samples: int = 0
    predictions: int = 0
    dead_letters: int = 0
    versions_affected: list[str] = field(default_factory=list)
    deletion_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"deletion_id": self.deletion_id, "samples": self.samples, "heldout_samples": self.heldout_samples,
                "predictions": self.predictions, "dead_letters": self.dead_letters,
                "versions_affected": self.versions_affected}


def _matching_samples(session: Session, criteria: ForgetCriteria) -> list[tuple[int, int, bool, str | None]]:
    """(id, label_id, held_out, external_id) of every sample the criteria select."""
    query = select(_SAMPLE.c.id, _SAMPLE.c.label_id, _SAMPLE.c.held_out, _SAMPLE.c.external_id)
    if criteria.before is not None:
        query = query.where(_SAMPLE.c.ingested_at < criteria.before)
    for key, value in criteria.meta:
        query = query.where(_SAMPLE.c.meta[key].as_string() == value)
    if not criteria.ids:
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]
    found: list[tuple[int, int, bool, str | None]] = []
    unique = sorted(set(criteria.ids))
    for start in range(0, len(unique), _IN_CHUNK):
        chunk = unique[start: start + _IN_CHUNK]
        found.extend(tuple(row) for row in session.execute(query.where(_SAMPLE.c.external_id.in_(chunk))))  # type: ignore[misc]
    return found


def _delete_samples(session: Session, rows: Sequence[tuple[int, int, bool, Any]]) -> tuple[int, int]:
    """Delete these samples and take them off their labels' counts; returns (all, held out)."""
    ids = [row[0] for row in rows]
    for start in range(0, len(ids), _IN_CHUNK):
        session.execute(delete(_SAMPLE).where(_SAMPLE.c.id.in_(ids[start: start + _IN_CHUNK])))
    per_label: Counter[int] = Counter(row[1] for row in rows)
    held: Counter[int] = Counter(row[1] for row in rows if row[2])
    label = Label.__table__  # type: ignore[attr-defined]
    for label_id, n in per_label.items():
        session.execute(update(label).where(label.c.id == label_id).values(
            sample_count=label.c.sample_count - n, heldout_count=label.c.heldout_count - held.get(label_id, 0)))
    return len(ids), sum(held.values())


def _drop_from_versions(session: Session, training_ids: Sequence[int], *, taint: bool) -> list[str]:
    """Take removed training samples out of every version's buffer; with ``taint``, count them
    on each version that learned from them. Returns the versions that did."""
    if not training_ids:
        return []
    removed = set(training_ids)
    ordered = sorted(removed)
    affected: list[str] = []
    for version in session.scalars(select(ModelVersion).where(ModelVersion.data_watermark >= ordered[0])).all():
        learned = sum(1 for i in ordered if i <= version.data_watermark)
        changed = False
        if taint and learned:
            version.forgotten_samples = (version.forgotten_samples or 0) + learned
            affected.append(version.name)
            changed = True
        kept = [i for i in version.buffer_members if i not in removed]
        if len(kept) != len(version.buffer_members):
            version.buffer_members = kept
            changed = True
        if changed:
            session.add(version)
    return sorted(affected)


def _known_ids(session: Session, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` some sample or logged prediction carries."""
    known: set[str] = set()
    unique = sorted(set(ids))
    for start in range(0, len(unique), _IN_CHUNK):
        chunk = unique[start: start + _IN_CHUNK]
        known |= set(session.execute(select(_SAMPLE.c.external_id).where(_SAMPLE.c.external_id.in_(chunk))).scalars())
        known |= set(session.execute(select(_PREDICTION.c.request_id)
                                     .where(_PREDICTION.c.request_id.in_(chunk))).scalars())
    return known


def forget(session: Session, criteria: ForgetCriteria, *, actor: str, reason: str | None) -> DeletionReport:
    """Delete what the criteria select, record the request, and commit: all or nothing.

    Raises
    ------
    UnknownIds
        Some of ``criteria.ids`` match neither a sample nor a prediction (checked before
        anything is deleted; the message lists them).
    """
    try:
        if criteria.ids:
            unknown = sorted(set(criteria.ids) - _known_ids(session, criteria.ids))
            if unknown:
                raise UnknownIds(unknown)
        rows = _matching_samples(session, criteria)
        report = DeletionReport()
        report.samples, report.heldout_samples = _delete_samples(session, rows)
        # Logged answers repeat a forgotten sample's text (serving.log_texts) and share its id;
        # ids asked for alone also reach answers that no sample has joined yet.
        request_ids = {row[3] for row in rows if row[3] is not None}
        if criteria.ids and not (criteria.before or criteria.meta):
            request_ids |= set(criteria.ids)
        ordered = sorted(request_ids)
        for start in range(0, len(ordered), _IN_CHUNK):
            result = session.execute(delete(_PREDICTION).where(
                _PREDICTION.c.request_id.in_(ordered[start: start + _IN_CHUNK])))
            report.predictions += int(result.rowcount or 0)
        report.versions_affected = _drop_from_versions(session, [row[0] for row in rows if not row[2]], taint=True)
        entry = DataDeletion(cause="forget", actor=actor, reason=reason, criteria=criteria.to_dict(),
                             samples=report.samples, heldout_samples=report.heldout_samples,
                             predictions=report.predictions, versions_affected=report.versions_affected)
        session.add(entry)
        session.commit()
        report.deletion_id = entry.id
        return report
    except BaseException:
        session.rollback()
        raise


def expire_batch(session: Session, *, older_than: datetime, batch: int) -> DeletionReport:
    """Delete up to ``batch`` samples and ``batch`` dead letters stored before ``older_than``
    (oldest first) and commit; call until both counts are below ``batch``.

    Retention does not mark versions as having learned forgotten data: it removes
    data for storage's sake, not at its owners' request. Each non-empty batch is
    recorded in ``data_deletion`` with cause ``retention``.
    """
    try:
        query = (select(_SAMPLE.c.id, _SAMPLE.c.label_id, _SAMPLE.c.held_out, _SAMPLE.c.external_id)
                 .where(_SAMPLE.c.ingested_at < older_than).order_by(_SAMPLE.c.id).limit(batch))
        rows = [tuple(row) for row in session.execute(query)]
        report = DeletionReport()
        report.samples, report.heldout_samples = _delete_samples(session, rows)  # type: ignore[arg-type]
        _drop_from_versions(session, [row[0] for row in rows if not row[2]], taint=False)
        letters = select(_DEAD_LETTER.c.id).where(_DEAD_LETTER.c.created_at < older_than) \
            .order_by(_DEAD_LETTER.c.id).limit(batch)
        result = session.execute(delete(_DEAD_LETTER).where(_DEAD_LETTER.c.id.in_(letters.scalar_subquery())))
        report.dead_letters = int(result.rowcount or 0)
        if report.samples or report.dead_letters:
            entry = DataDeletion(cause="retention", actor="retention", criteria={"before": older_than.isoformat()},
                                 samples=report.samples, heldout_samples=report.heldout_samples,
                                 dead_letters=report.dead_letters)
            session.add(entry)
            session.commit()
            report.deletion_id = entry.id
        else:
            session.rollback()
        return report
    except BaseException:
        session.rollback()
        raise


def missing_sample_ids(session: Session, ids: Iterable[int]) -> set[int]:
    """Which of ``ids`` no longer exist (forgotten or expired since a buffer chose them)."""
    wanted = sorted(set(ids))
    present: set[int] = set()
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start: start + _IN_CHUNK]
        present |= set(session.execute(select(_SAMPLE.c.id).where(_SAMPLE.c.id.in_(chunk))).scalars())
    return set(wanted) - present


def forgets_since(session: Session, since: datetime) -> bool:
    """Whether a forget request was carried out after ``since``."""
    query = select(DataDeletion.id).where(DataDeletion.cause == "forget", DataDeletion.created_at > since).limit(1)  # type: ignore[arg-type]
    return session.execute(query).first() is not None


def deletions(session: Session, *, limit: int = 50) -> list[DataDeletion]:
    """The newest deletions first."""
    return list(session.scalars(select(DataDeletion).order_by(DataDeletion.id.desc()).limit(limit)))  # type: ignore[union-attr]


def database_counts(session: Session) -> Mapping[str, int]:
    """Rows per table that deletion shrinks, for the size metrics."""
    return {name: int(session.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in (("sample", _SAMPLE), ("dead_letter", _DEAD_LETTER), ("prediction", _PREDICTION))}
