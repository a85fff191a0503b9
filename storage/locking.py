"""Serializing a read-then-write transaction across the processes sharing one database.

Some writes depend on what the same transaction read just before: a promotion starts
from the current production, content dedupe from the hashes already stored. Two
daemons doing either at the same moment must not both act on the same reading.

- SQLite: the driver (pysqlite) starts a transaction only at the first write, after
  the reads, so each reading could be stale by the time it is written on. ``BEGIN
  IMMEDIATE`` before the reads takes the database's single write lock for the whole
  transaction (waiting up to the busy timeout for another writer).
- PostgreSQL: a transaction-scoped advisory lock per purpose (``key``). It serializes
  only the transactions that ask for the same key, and it also covers rows that do not
  exist yet, where ``SELECT ... FOR UPDATE`` would lock nothing.
"""

from __future__ import annotations

from sqlmodel import Session

__all__ = ["PRODUCTION_MOVES", "begin_write", "serialize"]

#: Advisory lock keys (PostgreSQL); any fixed 64-bit numbers, one per purpose.
PRODUCTION_MOVES = 0x6C69_6665_6C6F_0001


def serialize(session: Session, key: int) -> None:
    """Hold ``key``'s lock (SQLite: the write lock) until the session's transaction ends.

    Call it first in the transaction, before the reads the writes depend on.
    """
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(key)})")
    else:
        begin_write(session)


def begin_write(session: Session) -> None:
    """On SQLite, take the write lock now rather than at the transaction's first write.

    SQLite has one writer at a time anyway, so this costs no concurrency there; it only
    makes the reads before the first write part of the locked transaction. Elsewhere a
    no-op: on PostgreSQL writers run in parallel, and serializing them is a choice each
    caller makes with :func:`serialize`.
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite" and not connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN IMMEDIATE")
