"""A lease in the database: at most one holder at a time, lost when not renewed.

Two daemons pointed at one database must never train at once. A lock held by a
connection would vanish with the connection and cannot be seen by operators, so the
lease is a row: ``holder`` and ``expires_at_ms``. Taking it is a single conditional
UPDATE (free, expired, or already ours), which both SQLite (one writer) and
PostgreSQL (row lock, condition re-checked after the wait under READ COMMITTED) make
atomic: of two daemons racing for an expired lease exactly one sees rowcount 1.

Times are Unix milliseconds from the caller's clock; hosts sharing a lease need
clocks within a small fraction of the TTL of each other (NTP).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from storage.models import TrainingLease

__all__ = ["LeaseState", "acquire", "holds", "read", "release"]

#: The lease that guards training (one per database).
TRAINING = "training"


@dataclass(frozen=True)
class LeaseState:
    """Who holds a lease and until when (``holder`` None: free)."""

    holder: str | None
    acquired_at_ms: int
    expires_at_ms: int

    def held_by_someone(self, now_ms: int) -> bool:
        return self.holder is not None and self.expires_at_ms > now_ms


def _ensure_row(session: Session, name: str) -> None:
    if session.get(TrainingLease, name) is not None:
        return
    session.add(TrainingLease(name=name))
    try:
        session.commit()
    except IntegrityError:  # another process inserted it first: fine
        session.rollback()


def acquire(session: Session, *, holder: str, ttl_ms: int, now_ms: int, name: str = TRAINING) -> bool:
    """Take or renew the lease for ``ttl_ms``; True if ``holder`` holds it afterwards."""
    _ensure_row(session, name)
    table = TrainingLease.__table__
    renewed = session.execute(
        update(table).where(table.c.name == name, table.c.holder == holder, table.c.expires_at_ms > now_ms)
        .values(expires_at_ms=now_ms + ttl_ms)
    )
    if renewed.rowcount == 1:  # type: ignore[attr-defined]
        session.commit()
        return True
    taken = session.execute(
        update(table)
        .where(table.c.name == name, or_(table.c.holder.is_(None), table.c.expires_at_ms <= now_ms))
        .values(holder=holder, acquired_at_ms=now_ms, expires_at_ms=now_ms + ttl_ms)
    )
    session.commit()
    return taken.rowcount == 1  # type: ignore[attr-defined]


def release(session: Session, *, holder: str, name: str = TRAINING) -> bool:
    """Give the lease up at once (a clean stop) so a standby need not wait for expiry."""
    table = TrainingLease.__table__
    result = session.execute(
        update(table).where(table.c.name == name, table.c.holder == holder).values(holder=None, expires_at_ms=0)
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def holds(session: Session, *, holder: str, now_ms: int, name: str = TRAINING) -> bool:
    """Whether ``holder`` holds the lease now, with the row locked until the transaction ends.

    Called inside another transaction (a promotion) so that a takeover cannot slip in
    between this check and that transaction's commit (PostgreSQL row lock; SQLite has a
    single writer anyway).
    """
    table = TrainingLease.__table__
    row = session.execute(
        select(table.c.holder, table.c.expires_at_ms).where(table.c.name == name).with_for_update()
    ).first()
    return row is not None and row.holder == holder and row.expires_at_ms > now_ms


def read(session: Session, *, name: str = TRAINING) -> LeaseState:
    row = session.get(TrainingLease, name)
    if row is None:
        return LeaseState(holder=None, acquired_at_ms=0, expires_at_ms=0)
    session.refresh(row)
    return LeaseState(holder=row.holder, acquired_at_ms=row.acquired_at_ms, expires_at_ms=row.expires_at_ms)
