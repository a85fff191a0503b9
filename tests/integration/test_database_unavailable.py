"""A database that refuses writes stops progress but loses nothing and skips nothing."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from daemon.ingest.broker import EmbeddedBroker
from daemon.runtime import Daemon
from storage.engine import make_engine
from storage.models import Sample
from tests.conftest import produce, record, running_ingestor, settings_for, wait_for
from tests.reliability_log import record_case


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


class TestFailedWriteLeaksNoSampleText:
    def test_readyz_status_and_logs_carry_the_error_without_the_texts(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """SQLAlchemy puts a failed statement's parameters in its message; they are sample texts."""
        marker = "customer-secret-" + uuid.uuid4().hex
        settings = settings_for(broker, topic, sqlite_url, tmp_path, api={"port": 0, "token": "t0ken"})
        path = sqlite_url.removeprefix("sqlite:///")
        running = Daemon(settings).start()
        try:
            with caplog.at_level(logging.DEBUG), httpx.Client(base_url=running.api_url or "", timeout=30,
                                                              headers={"Authorization": "Bearer t0ken"}) as client:
                # The very INSERT that carries the texts fails, as a full disk or a constraint would.
                with sqlite3.connect(path) as admin:
                    admin.execute("CREATE TRIGGER refuse BEFORE INSERT ON sample "
                                  "BEGIN SELECT RAISE(ABORT, 'write refused for the test'); END")
                produce(broker.bootstrap_servers, topic, [record(f"{marker} {i}", "billing") for i in range(5)])

                def failing() -> bool:
                    return client.get("/readyz").json()["last_error"] is not None

                wait_for(failing, what="the store failure to show on /readyz")
                readyz = client.get("/readyz")
                status = client.get("/v1/status")
                assert readyz.status_code == 503 and "write refused for the test" in readyz.json()["last_error"]
                assert "INSERT INTO sample" in readyz.json()["last_error"]  # the statement, not its values
                assert status.json()["ingest"]["last_error"]
                for where, text in (("/readyz", readyz.text), ("/v1/status", status.text), ("logs", _ours(caplog))):
                    assert marker not in text, where
                with sqlite3.connect(path) as admin:
                    admin.execute("DROP TRIGGER refuse")
                wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == 5, what="stored after the fix")
        finally:
            running.stop()
        assert marker not in _ours(caplog)
        record_case("failed database write", inflicted="an SQLite trigger refuses the INSERT that carries the texts",
                    checked="the error on /readyz, /v1/status and in the logs names the statement, never a text; "
                            "all stored once the write works", produced=5, stored=5, dead_lettered=0, lost=0)


def _ours(caplog: pytest.LogCaptureFixture) -> str:
    """What lifelong logs at any level, and everything at INFO and above (the test's own producer
    logs record values at DEBUG, as kafka-python does)."""
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                     if r.name.split(".")[0] in ("daemon", "storage", "learners", "sqlalchemy")
                     or r.levelno >= logging.INFO)


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
