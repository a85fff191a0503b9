"""Who else on the machine can read lifelong's secrets and data.

The database holds every customer utterance, the data directory the models and the
generated API token, and a config file may hold the token and broker or database
passwords. What lifelong creates it creates private (directories 0700, files 0600);
what already exists with group or other access it names at start, with the command
that fixes it, rather than changing an operator's files behind their back.
"""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from daemon.config import Settings

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "permission_warnings"]

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def _shared_mode(path: Path) -> int | None:
    """The permission bits when group or others have any access, else None (or when it does not exist)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def _sqlite_file(settings: Settings) -> Path | None:
    url = make_url(settings.database_url)
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def permission_warnings(settings: Settings) -> list[str]:
    """One line per file or directory that others can read and should not, each with its fix."""
    warnings = []
    config = settings.config_file
    if config is not None and settings.file_secrets and (mode := _shared_mode(config)) is not None:
        warnings.append(f"config file {config} holds secrets ({', '.join(settings.file_secrets)}) and is readable "
                        f"beyond its owner (mode {mode:04o}): run `chmod 600 {config}`, or pass the secrets as "
                        "LIFELONG_* environment variables")
    candidates = [(settings.data_dir, PRIVATE_DIR, "data directory"),
                  (settings.data_dir / "api-token", PRIVATE_FILE, "API token file")]
    database = _sqlite_file(settings)
    if database is not None:
        candidates.append((database, PRIVATE_FILE, "database file"))
    for path, wanted, what in candidates:
        mode = _shared_mode(path)
        if mode is not None:
            warnings.append(f"{what} {path} is accessible beyond its owner (mode {mode:04o}): "
                            f"run `chmod {wanted:o} {path}`")
    return warnings
