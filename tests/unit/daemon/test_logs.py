"""The repeat filter keeps a library's retry loop from flooding the log, and never touches lifelong's lines."""

from __future__ import annotations

import logging

from daemon.logs import RepeatedLibraryLines


def _record(name: str, message: str, created: float) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.ERROR, __file__, 1, message, (), None)
    record.created = created
    return record


def test_identical_library_lines_pass_once_a_window() -> None:
    lines = RepeatedLibraryLines(window_s=60)
    first = "Bootstrap connection to bootstrap-0 failed: [Error 33] UnsupportedSaslMechanismError (backoff 0.47 secs)"
    again = "Bootstrap connection to bootstrap-0 failed: [Error 33] UnsupportedSaslMechanismError (backoff 3.79 secs)"
    assert lines.filter(_record("kafka.net.manager", first, 100.0))
    assert not lines.filter(_record("kafka.net.manager", again, 110.0))  # same once numbers are gone
    assert lines.filter(_record("kafka.net.manager", "Bootstrap failed: KafkaTimeoutError", 111.0))  # a new line
    assert lines.filter(_record("kafka.net.manager", again, 161.0))  # the window has passed


def test_lifelong_lines_always_pass() -> None:
    lines = RepeatedLibraryLines(window_s=60)
    for second in range(5):
        assert lines.filter(_record("daemon.ingest.consumer", "storing batch failed, retrying in 0.1s", 100.0 + second))
