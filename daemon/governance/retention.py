"""The retention pass: samples and dead letters older than ``ingest.retention_days`` go.

Run from the scheduler on the daemon that holds the training lease (one deleter per
database). Each batch is its own short transaction (``storage.deletion.expire_batch``):
ingestion, which writes to the same tables, never waits behind one huge delete, and a
pass cut short (shutdown, a database outage) has deleted whole batches only and goes on
at the next pass. The same pass refreshes the table-size and database-size gauges.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from daemon.metrics import Metrics
from storage.deletion import DeletionReport, database_counts, expire_batch
from storage.models import utcnow

__all__ = ["RetentionJob", "database_bytes"]

logger = logging.getLogger(__name__)


def database_bytes(engine: Engine) -> int | None:
    """The database's size on disk, or None where it cannot be read."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            return None
        return sum(os.path.getsize(p) for p in (database, f"{database}-wal") if Path(p).is_file())
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    return None


class RetentionJob:
    """One retention pass per call: at most ``max_batches`` batches of ``batch`` rows."""

    def __init__(self, engine: Engine, metrics: Metrics, *, retention_days: int | None, batch: int = 1000,
                 max_batches: int = 100, should_run: Callable[[], bool] = lambda: True) -> None:
        self.engine = engine
        self.metrics = metrics
        self.retention = timedelta(days=retention_days) if retention_days else None
        self.batch = batch
        self.max_batches = max_batches
        self.should_run = should_run

    def run_once(self) -> DeletionReport:
        """Delete one pass's worth; returns the totals. Database errors are logged, not raised:
        the next pass carries on where this one stopped."""
        total = DeletionReport()
        try:
            if self.retention is not None and self.should_run():
                total = self._expire()
            self._measure()
        except SQLAlchemyError as exc:
            logger.warning("retention pass stopped by a database error (%s); the next pass goes on",
                           exc.__class__.__name__)
        return total

    def _expire(self) -> DeletionReport:
        assert self.retention is not None
        cutoff = utcnow() - self.retention
        total = DeletionReport()
        started = time.monotonic()
        for _ in range(self.max_batches):
            with Session(self.engine) as session:
                report = expire_batch(session, older_than=cutoff, batch=self.batch)
            self.metrics.count_deletion(report, cause="retention")
            total.samples += report.samples
            total.heldout_samples += report.heldout_samples
            total.dead_letters += report.dead_letters
            if report.samples < self.batch and report.dead_letters < self.batch:
                break
        if total.samples or total.dead_letters:
            logger.info("retention: deleted %d samples (%d held out) and %d dead letters stored before %s in %.1f s",
                        total.samples, total.heldout_samples, total.dead_letters, cutoff.isoformat(),
                        time.monotonic() - started)
        return total

    def _measure(self) -> None:
        with Session(self.engine) as session:
            for table, n in database_counts(session).items():
                self.metrics.database_rows.labels(table=table).set(n)
        size = database_bytes(self.engine)
        if size is not None:
            self.metrics.database_bytes.set(size)
