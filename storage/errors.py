"""Errors raised by ``storage``.

    StorageError
     ├── SchemaError        the database schema is missing or behind the code
     ├── DatabaseUnreachable  no connection at all (wrong URL, server down, bad credentials)
     └── StoreUnavailable   the database cannot be written right now (locked, read-only, gone)
"""

from __future__ import annotations

__all__ = ["DatabaseUnreachable", "SchemaError", "StorageError", "StoreUnavailable"]


class StorageError(Exception):
    """Root of every error ``storage`` raises."""


class SchemaError(StorageError):
    """The schema does not match this code; the message says what to run."""


class StoreUnavailable(StorageError):
    """A write failed for a reason that may pass (lock, disk, connection); retry later."""


class DatabaseUnreachable(StorageError):
    """The database cannot be reached at start; the message names ``database.url``."""
