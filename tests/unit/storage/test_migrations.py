from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import storage.models  # noqa: F401
from storage.engine import current_revision, ensure_schema_current, head_revision, make_engine, upgrade
from storage.errors import SchemaError


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


class TestMigrations:
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
