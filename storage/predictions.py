"""The prediction log: served answers stored in batches, joined to labels that arrive later.

A labeled record whose ``id`` equals a logged prediction's ``request_id`` is the truth
about that answer; the join happens in the ingest transaction (:func:`join_feedback`), so a
sample and the prediction it judges are updated together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, case, delete, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from storage.errors import StoreUnavailable
from storage.models import PredictionRecord, utcnow

__all__ = ["LiveAccuracy", "NewPrediction", "join_feedback", "live_accuracy", "prune_predictions",
           "record_predictions"]

_TABLE = PredictionRecord.__table__  # type: ignore[attr-defined]
#: Ids per IN (...) list: well under every driver's bound-parameter limit.
_CHUNK = 500


@dataclass(frozen=True)
class NewPrediction:
    request_id: str
    version: str
    label: str | None
    confidence: float
    abstained: bool
    text_hash: str
    text: str | None = None


@dataclass(frozen=True)
class LiveAccuracy:
    """Of a version's logged answers, how many got a label later, and how many of those it got right.

    An abstention counts as joined and not right (it did not give the answer), unless the
    truth is the configured out-of-scope label.
    """

    joined: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.joined if self.joined else None

    def to_dict(self) -> dict[str, int | float | None]:
        """The JSON the status and model views show."""
        return {"joined": self.joined, "correct": self.correct, "accuracy": self.accuracy}


def record_predictions(session: Session, rows: Sequence[NewPrediction]) -> None:
    """Insert ``rows`` in one statement and commit; :class:`StoreUnavailable` if the database refuses."""
    if not rows:
        return
    now = utcnow()
    try:
        session.execute(insert(_TABLE), [{
            "request_id": r.request_id, "version": r.version, "label": r.label, "confidence": r.confidence,
            "abstained": r.abstained, "text_hash": r.text_hash, "text": r.text, "created_at": now,
        } for r in rows])
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise StoreUnavailable(f"cannot store {len(rows)} predictions: {type(exc).__name__}") from exc


def join_feedback(session: Session, labels: Mapping[str, str]) -> set[str]:
    """Give every not-yet-joined prediction whose ``request_id`` is a key of ``labels`` its true
    label; returns the ids that matched. Runs inside the caller's transaction (no commit)."""
    if not labels:
        return set()
    matched: set[str] = set()
    ids = list(labels)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        matched |= set(session.execute(
            select(_TABLE.c.request_id).where(_TABLE.c.request_id.in_(chunk), _TABLE.c.true_label.is_(None))
        ).scalars())
    if matched:
        now = utcnow()
        session.execute(
            update(_TABLE).where(_TABLE.c.request_id == bindparam("rid"), _TABLE.c.true_label.is_(None))
            .values(true_label=bindparam("truth"), joined_at=now),
            [{"rid": rid, "truth": labels[rid]} for rid in sorted(matched)],
        )
    return matched


def live_accuracy(session: Session, versions: Sequence[str] | None = None, *,
                  oos_label: str | None = None) -> dict[str, LiveAccuracy]:
    """Per version, its joined answers and the right ones. With ``oos_label``, an abstention
    on a text whose truth is that label is right (it was out of scope)."""
    right = _TABLE.c.label == _TABLE.c.true_label
    if oos_label is not None:
        right = right | (_TABLE.c.abstained.is_(True) & (_TABLE.c.true_label == oos_label))
    query = (select(_TABLE.c.version, func.count(), func.sum(case((right, 1), else_=0)))
             .where(_TABLE.c.true_label.is_not(None)).group_by(_TABLE.c.version))
    if versions is not None:
        query = query.where(_TABLE.c.version.in_(list(versions)))
    return {version: LiveAccuracy(joined=int(n), correct=int(right or 0))
            for version, n, right in session.execute(query).all()}


def prune_predictions(session: Session, *, older_than: datetime, batch: int = 5000) -> int:
    """Delete at most ``batch`` predictions logged before ``older_than`` (oldest first) and commit;
    returns how many. Call until it returns less than ``batch``: small transactions keep the
    ingest path's writes from waiting behind one huge delete."""
    ids = select(_TABLE.c.id).where(_TABLE.c.created_at < older_than).order_by(_TABLE.c.id).limit(batch)
    result = session.execute(delete(_TABLE).where(_TABLE.c.id.in_(ids.scalar_subquery())))
    session.commit()
    return int(result.rowcount or 0)
