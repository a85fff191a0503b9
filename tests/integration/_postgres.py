"""A PostgreSQL server for tests: the one named by ``LIFELONG_TEST_POSTGRES_URL``,
else the local Debian cluster started with ``pg_ctlcluster`` (as CI does).

Returns a reason instead of a URL when no server can be had, so the tests that
need it are skipped with that reason printed, never silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

ADMIN_URL_ENV = "LIFELONG_TEST_POSTGRES_URL"
_DEFAULT_URL = "postgresql+psycopg://lifelong:pw@127.0.0.1:5432/postgres"


def _listening(port: int = 5432) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _start_local_cluster() -> str | None:
    """Start the Debian cluster and create the test role; returns a reason on failure."""
    if shutil.which("pg_ctlcluster") is None or not Path("/usr/lib/postgresql").is_dir():
        return "PostgreSQL server not installed (apt-get install postgresql)"
    if os.geteuid() != 0:
        return "starting PostgreSQL needs root (pg_ctlcluster/su postgres)"
    versions = sorted(p.name for p in Path("/usr/lib/postgresql").iterdir())
    if not versions:
        return "no PostgreSQL version under /usr/lib/postgresql"
    version = versions[-1]
    if not _listening():
        if not Path(f"/etc/postgresql/{version}/main").is_dir():
            subprocess.run(["pg_createcluster", version, "main"], check=False, capture_output=True)
        started = subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], capture_output=True, text=True
        )
        if started.returncode != 0 and not _listening():
            return f"pg_ctlcluster failed: {started.stderr.strip()[:300]}"
    role = subprocess.run(
        ["su", "postgres", "-c",
         "psql -tAc \"select 1 from pg_roles where rolname='lifelong'\" | grep -q 1 || "
         "psql -c \"create user lifelong password 'pw' createdb\""],
        capture_output=True, text=True,
    )
    if role.returncode != 0:
        return f"cannot create role lifelong: {role.stderr.strip()[:300]}"
    return None


def admin_url() -> tuple[str | None, str | None]:
    """(URL of a database where we may CREATE DATABASE, reason it is unavailable)."""
    url = os.environ.get(ADMIN_URL_ENV)
    if url:
        return url, None
    reason = _start_local_cluster()
    if reason:
        return None, reason
    return _DEFAULT_URL, None


def create_database(admin: str) -> tuple[str, str]:
    """Create a fresh database; returns (its URL, its name)."""
    name = f"lifelong_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    base, _, _ = admin.rpartition("/")
    return f"{base}/{name}", name


def drop_database(admin: str, name: str) -> None:
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def local_cluster_control(action: str) -> None:
    """Stop or start the local Debian cluster (the fault tests' database outage).

    Only the cluster this module started can be stopped: with ``LIFELONG_TEST_POSTGRES_URL``
    pointing elsewhere the outage tests cannot run, and say so.
    """
    if os.environ.get(ADMIN_URL_ENV):
        raise RuntimeError(f"{ADMIN_URL_ENV} names an external server; the outage test stops only the local cluster")
    version = sorted(p.name for p in Path("/usr/lib/postgresql").iterdir())[-1]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    if action == "stop":
        command += ["--", "-m", "fast"]  # what a crash or failover looks like to clients: sessions terminated
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)
