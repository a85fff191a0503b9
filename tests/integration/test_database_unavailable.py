"""A database that refuses writes stops progress but loses nothing and skips nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from daemon.broker import EmbeddedBroker
from storage.engine import make_engine
from storage.models import Sample
from tests.conftest import produce, record, running_ingestor, settings_for, wait_for


class TestDatabaseLocked:
    def test_locked_database_holds_offsets_until_the_lock_goes(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path
    ) -> None:
        path = sqlite_url.removeprefix("sqlite:///")
        sent = produce(broker.bootstrap_servers, topic, [record(f"before lock {i}", "a") for i in range(10)])
        settings = settings_for(broker, topic, sqlite_url, tmp_path, database={"busy_timeout_ms": 50})
        with running_ingestor(settings) as running:
            running.wait_stored(sent)

            # Another process-like writer takes the write lock and keeps it.
            blocker = sqlite3.connect(path, timeout=0)
            blocker.execute("BEGIN IMMEDIATE")
            sent += produce(broker.bootstrap_servers, topic, [record(f"during lock {i}", "a") for i in range(25)])
            wait_for(lambda: running.value("lifelong_ingest_store_failures_total") >= 2, what="store failures")
            assert running.ingestor.health.database_ok is False
            # Nothing advanced: the positions still cover only what was stored before the lock.
            assert running.stored_position_total() == 10

            blocker.rollback()
            blocker.close()
            running.wait_stored(sent)
            assert running.ingestor.health.database_ok is True

        engine = make_engine(sqlite_url)
        with Session(engine) as session:
            texts = set(session.execute(select(Sample.text)).scalars())
            count = session.execute(select(func.count()).select_from(Sample)).scalar_one()
        engine.dispose()
        assert count == 35
        assert texts == {f"before lock {i}" for i in range(10)} | {f"during lock {i}" for i in range(25)}
        assert running.value("lifelong_ingest_records_stored_total") == 35


class TestDatabaseReadOnly:
    def test_read_only_file_is_retried_not_skipped(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path
    ) -> None:
        path = Path(sqlite_url.removeprefix("sqlite:///"))
        sent = produce(broker.bootstrap_servers, topic, [record(f"text {i}", "a") for i in range(5)])
        # SQLite's read-only mode stands in for a disk or permission failure (tests run as root,
        # so chmod would not stop writes).
        ro_url = f"sqlite:///file:{path}?mode=ro&uri=true"
        settings = settings_for(broker, topic, ro_url, tmp_path)
        with running_ingestor(settings) as running:
            wait_for(lambda: running.value("lifelong_ingest_store_failures_total") >= 2, what="store failures")
            assert running.value("lifelong_ingest_records_stored_total") == 0
        writable = settings_for(broker, topic, sqlite_url, tmp_path)
        with running_ingestor(writable) as running:
            running.wait_stored(sent)
        assert running.value("lifelong_ingest_records_stored_total") == 5
