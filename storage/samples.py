"""Queries over stored samples that training and evaluation need."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlmodel import Session

from storage.models import Label, Sample

__all__ = ["StoredExample", "count_training_after", "examples_by_ids", "heldout_examples", "recent_training_examples",
           "training_examples"]

_IN_CHUNK = 500


class StoredExample(NamedTuple):
    sample_id: int
    text: str
    label: str
    #: The record's ``meta``, read only where asked for (group slices in the gate).
    meta: dict[str, Any] | None = None


def _select() -> object:
    """Samples with their label's name; a retired label's samples are kept but never trained
    on, replayed or evaluated on, so every query here leaves them out."""
    return (select(Sample.id, Sample.text, Label.name).join(Label, Label.id == Sample.label_id)
            .where(Label.retired_at.is_(None)))  # type: ignore[union-attr]


def training_examples(session: Session, *, after_id: int, up_to_id: int | None = None) -> list[StoredExample]:
    """Training (never held-out) samples with ``after_id < id <= up_to_id``, oldest first."""
    query = _select().where(Sample.held_out.is_(False), Sample.id > after_id)  # type: ignore[attr-defined,union-attr]
    if up_to_id is not None:
        query = query.where(Sample.id <= up_to_id)  # type: ignore[operator]
    return [StoredExample(*row) for row in session.execute(query.order_by(Sample.id))]  # type: ignore[arg-type]


def recent_training_examples(session: Session, *, labels: Collection[str], per_label: int,
                             up_to_id: int | None = None) -> list[StoredExample]:
    """Up to ``per_label`` of the newest training samples of each of ``labels`` (ids ``<= up_to_id``), in id order."""
    found: list[StoredExample] = []
    for label in sorted(set(labels)):
        query = _select().where(Sample.held_out.is_(False), Label.name == label)  # type: ignore[attr-defined,union-attr]
        if up_to_id is not None:
            query = query.where(Sample.id <= up_to_id)  # type: ignore[operator]
        rows = session.execute(query.order_by(Sample.id.desc()).limit(per_label))  # type: ignore[union-attr]
        found.extend(StoredExample(*row) for row in rows)  # type: ignore[arg-type]
    return sorted(found)


def count_training_after(session: Session, *, after_id: int) -> int:
    query = select(func.count()).select_from(Sample).where(Sample.held_out.is_(False), Sample.id > after_id)  # type: ignore[attr-defined,operator]
    return int(session.execute(query).scalar_one())


def examples_by_ids(session: Session, ids: Sequence[int]) -> list[StoredExample]:
    """The samples with these ids (missing ids are skipped), in id order."""
    found: list[StoredExample] = []
    unique = sorted(set(ids))
    for start in range(0, len(unique), _IN_CHUNK):
        chunk = unique[start : start + _IN_CHUNK]
        query = _select().where(Sample.id.in_(chunk))  # type: ignore[attr-defined,union-attr]
        found.extend(StoredExample(*row) for row in session.execute(query))  # type: ignore[arg-type]
    return sorted(found)


def heldout_examples(session: Session, *, labels: Collection[str] | None = None,
                     up_to_id: int | None = None, with_meta: bool = False,
                     newest_per_label: int | None = None, newest: int | None = None) -> list[StoredExample]:
    """Held-out samples (of ``labels`` if given, up to ``up_to_id`` if given), oldest first;
    ``with_meta`` reads each sample's ``meta`` too. ``newest_per_label`` keeps only each
    label's newest that many, chosen in the database, so that an evaluation's time and
    memory stop growing with the stream while every label keeps its support. ``newest``
    keeps only the newest that many overall (of ``labels``), also chosen in the database:
    a drift reference window reads its window, not the whole held-out history."""
    query = _select().where(Sample.held_out.is_(True))  # type: ignore[attr-defined,union-attr]
    if with_meta:
        query = query.add_columns(Sample.meta)  # type: ignore[attr-defined]
    if up_to_id is not None:
        query = query.where(Sample.id <= up_to_id)  # type: ignore[operator]
    if labels is not None:
        query = query.where(Label.name.in_(list(labels)))  # type: ignore[attr-defined]
    if newest_per_label is not None:
        ranked = (select(Sample.id.label("ranked_id"),  # type: ignore[attr-defined]
                         func.row_number().over(partition_by=Sample.label_id,
                                                order_by=Sample.id.desc()).label("rank"))  # type: ignore[attr-defined]
                  .where(Sample.held_out.is_(True)))  # type: ignore[attr-defined]
        if up_to_id is not None:
            ranked = ranked.where(Sample.id <= up_to_id)  # type: ignore[operator]
        per_label = ranked.subquery()
        query = query.join(per_label, per_label.c.ranked_id == Sample.id).where(per_label.c["rank"] <= newest_per_label)
    if newest is not None:
        newest_first = session.execute(query.order_by(Sample.id.desc()).limit(newest))  # type: ignore[attr-defined]
        return [StoredExample(*row) for row in reversed(newest_first.all())]  # type: ignore[arg-type]
    return [StoredExample(*row) for row in session.execute(query.order_by(Sample.id))]  # type: ignore[arg-type]
