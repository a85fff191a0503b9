from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import Session, SQLModel

import storage.models  # noqa: F401
from storage.engine import (
    _alembic_config,
    current_revision,
    ensure_schema_current,
    head_revision,
    make_engine,
    upgrade,
)
from storage.errors import SchemaError
from storage.ingest_store import stored_hashes


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


class TestMigrations:
    # Alembic cannot reflect expression indexes on SQLite; ix_sample_content_key is checked
    # by name and by query plan in test_ingest_store.py instead.
    @pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
    @pytest.mark.filterwarnings("ignore:.*expression-based index:sqlalchemy.exc.SAWarning")
    def test_migrations_match_the_models(self, tmp_path: Path) -> None:
        engine = make_engine(_url(tmp_path))
        upgrade(engine)
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
        engine.dispose()
        assert diff == [], f"models and migrations differ; write a migration: {diff}"

    def test_sqlite_runs_in_wal_mode_with_busy_timeout(self, tmp_path: Path) -> None:
        engine = make_engine(_url(tmp_path), busy_timeout_ms=1234)
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 1234
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA cache_size")).scalar() == -16 * 1024
            assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 10_000
        engine.dispose()

    def test_sqlite_uri_names_are_not_created_as_directories(self, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        make_engine(f"sqlite:///{tmp_path / 'data' / 'db.sqlite'}").dispose()
        make_engine(f"sqlite:///file:{tmp_path / 'db.sqlite'}?mode=ro&uri=true").dispose()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no "file:" directory

    def test_the_outbox_migration_takes_earlier_decisions_as_delivered(self, database_url: str) -> None:
        engine = make_engine(database_url)  # migrated to head by the fixture
        command.downgrade(_alembic_config(engine), "0005")
        with engine.begin() as connection:
            for outcome in ("promoted", "rejected"):
                connection.execute(text(
                    "INSERT INTO promotion_decision (candidate, outcome, forced, actor, checks, created_at) "
                    "VALUES ('v0001', :outcome, false, 'gate', '[]', '2026-12-01 00:00:00')"), {"outcome": outcome})
        upgrade(engine)
        with engine.connect() as connection:
            rows = dict(connection.execute(text("SELECT outcome, event_sent_at FROM promotion_decision")).all())
        assert rows["promoted"] is not None and rows["rejected"] is None
        with Session(engine) as session:
            from storage.registry import undelivered_events

            assert undelivered_events(session) == []  # nothing from before the upgrade is sent again
        engine.dispose()

    def test_content_key_migration_keeps_the_samples_and_downgrades(self, database_url: str) -> None:
        def index_sql() -> dict[str, str]:
            with engine.connect() as connection:
                return dict(connection.execute(text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sample'"
                    if engine.dialect.name == "postgresql" else
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sample'")).all())

        def indexes() -> set[str]:
            return set(index_sql())

        engine = make_engine(database_url)  # migrated to head by the fixture
        command.downgrade(_alembic_config(engine), "0003")
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO label (name, sample_count, heldout_count, first_seen_at) "
                                    "VALUES ('a', 1, 0, '2026-11-24 00:00:00')"))
            connection.execute(text(
                'INSERT INTO sample (text, label_id, topic, "partition", "offset", content_hash, held_out, ingested_at) '
                "SELECT 'kept', id, 't', 0, 0, :hash, false, '2026-11-24 00:00:00' FROM label"), {"hash": "ab" * 32})
        assert {"ix_sample_content_hash", "ix_sample_external_id"} <= indexes()
        upgrade(engine)
        with Session(engine) as session:
            assert stored_hashes(session, ["ab" * 32, "ab" * 8 + "cd" * 24]) == {"ab" * 32}
        assert "substr" in index_sql()["ix_sample_content_key"]
        assert not {"ix_sample_content_hash", "ix_sample_external_id"} & indexes()
        command.downgrade(_alembic_config(engine), "0003")
        assert {"ix_sample_content_hash", "ix_sample_external_id"} <= indexes()
        assert "ix_sample_content_key" not in indexes()
        engine.dispose()


class TestEnsureSchemaCurrent:
    def test_empty_database_is_refused_with_the_command_to_run(self, tmp_path: Path) -> None:
        engine = make_engine(_url(tmp_path))
        with pytest.raises(SchemaError, match="has no lifelong schema; run `lifelong db upgrade` first"):
            ensure_schema_current(engine)
        engine.dispose()

    def test_unknown_revision_is_refused_as_newer_than_the_code(self, tmp_path: Path) -> None:
        engine = make_engine(_url(tmp_path))
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'base0'"))
        with pytest.raises(SchemaError, match=r"at revision base0, newer than this code"):
            ensure_schema_current(engine)
        engine.dispose()

    def test_current_database_passes(self, tmp_path: Path) -> None:
        engine = make_engine(_url(tmp_path))
        upgrade(engine)
        ensure_schema_current(engine)
        assert current_revision(engine) == head_revision()
        engine.dispose()
