"""Database engine setup and schema migrations.

The engine is built in the entrypoint from settings and passed down; nothing here
connects at import time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from storage.errors import DatabaseUnreachable, SchemaError

__all__ = ["check_connection", "current_revision", "ensure_schema_current", "head_revision", "make_engine", "upgrade"]

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).with_name("migrations")

#: SQLite page cache per connection, in KiB (see make_engine).
SQLITE_CACHE_KIB = 16 * 1024
#: WAL pages after which a commit checkpoints (about 40 MB of WAL at 4 KiB pages).
SQLITE_CHECKPOINT_PAGES = 10_000


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, echo: bool = False) -> Engine:
    """Build an engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys.

    WAL lets readers (``lifelong status``, the API) run beside the single ingest
    writer; ``synchronous=NORMAL`` in WAL mode survives a killed process, which is
    the failure the ingest path must tolerate. A 16 MiB page cache (SQLite's default
    is 2 MiB) keeps the sample indexes' hot pages in memory while ingest inserts, and
    checkpointing every 10,000 WAL pages instead of 1,000 writes an index page that
    several batches touched back into the database file once rather than once per
    batch; together about a quarter of SQLite's share of ingest time
    (``benchmarks/ingest.py``).

    Statement parameters are hidden from error messages and logs: sample text stays in
    the database.
    """
    parsed = make_url(url)
    # A failed statement's message would otherwise carry its bound parameters (sample
    # texts and labels) into logs, /v1/status and the unauthenticated /readyz.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        # A "file:..." name is an SQLite URI (with ?uri=true), not a path to create.
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            _create_private(Path(parsed.database))
        kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql":
            # A database that stops answering must fail a connection attempt in seconds, not
            # hang the lease renewal or a shutdown for the OS's TCP timeout (minutes).
            kwargs["connect_args"] = {"connect_timeout": 10}
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
            cursor.close()

    return engine


def _create_private(database: Path) -> None:
    """Create the SQLite file owner-only (0600, directory 0700) before SQLite creates it 0644.

    SQLite gives its -wal and -shm files the database file's permissions, so they
    follow. An existing file is left as it is (the daemon warns about a shared one).
    """
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def check_connection(engine: Engine) -> None:
    """Connect once, so a wrong ``database.url`` fails at start with one line instead of a traceback.

    Raises
    ------
    DatabaseUnreachable
        Naming the setting and the driver's first line of explanation.
    """
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        url = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnreachable(f"database.url: cannot connect to {url}: {reason}") from exc


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The newest migration this code ships."""
    script = ScriptDirectory(str(_MIGRATIONS))
    head = script.get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise SchemaError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` for an empty database."""
    check_connection(engine)
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    check_connection(engine)
    logger.info("upgrading database schema to %s", revision)
    command.upgrade(_alembic_config(engine), revision)


def ensure_schema_current(engine: Engine) -> None:
    """Refuse to run against a schema that is behind (or ahead of) this code.

    Raises
    ------
    SchemaError
        With the command that fixes it.
    """
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    url = engine.url.render_as_string(hide_password=True)
    if current is None:
        raise SchemaError(f"database {url} has no lifelong schema; run `lifelong db upgrade` first")
    script = ScriptDirectory(str(_MIGRATIONS))
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaError(f"database {url} is at revision {current}, newer than this code ({head}); upgrade lifelong")
    raise SchemaError(f"database {url} is at revision {current}, code needs {head}; run `lifelong db upgrade`")
