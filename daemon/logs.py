"""Structured logging, configured once by the process entrypoint.

Plain mode prints ``time level logger: message``; JSON mode prints one object per
line with the same fields plus any ``extra=`` keys, for log shippers. Library
modules only call ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

__all__ = ["RepeatedLibraryLines", "configure_logging"]

_HANDLER_NAME = "lifelong"
#: Not extras: the record's own fields, and uvicorn's ANSI-coloured duplicate of the message.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class RepeatedLibraryLines(logging.Filter):
    """Let a library's identical warning through once a minute, not on every retry.

    kafka-python logs each failed connection attempt (several a second while a broker
    is down or refuses the credentials). lifelong says what is wrong once in its own
    line and in ``/readyz``; the library's repeats add nothing but volume. Messages
    count as identical once their numbers (ports, backoff seconds, ids) are removed.
    lifelong's own records always pass.
    """

    _NUMBERS = re.compile(r"\d+(\.\d+)?")

    def __init__(self, prefixes: tuple[str, ...] = ("kafka",), window_s: float = 60.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, self._NUMBERS.sub("#", record.getMessage()))
        last = self._last.get(key)
        if last is not None and record.created - last < self.window_s:
            return False
        if len(self._last) > 1000:  # bounded: forget everything rather than grow
            self._last.clear()
        self._last[key] = record.created
        return True


def configure_logging(level: str = "INFO", *, json_format: bool = False) -> None:
    """Install lifelong's handler on the root logger; calling it again replaces it, never duplicates."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RepeatedLibraryLines())
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # kafka-python logs every connection at INFO, httpx every CLI request, APScheduler every job run (the lease
    # renewal runs every few seconds); keep their warnings only.
    for noisy in ("kafka", "alembic.runtime.plugins", "uvicorn.access", "apscheduler", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
