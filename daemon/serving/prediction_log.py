"""Served answers written to the database off the request path, in batches.

``/v1/predict`` hands its answers to :meth:`PredictionLog.submit`, which only appends to a
bounded queue: the request never waits for the database, and a database that is slow or
gone costs dropped log rows (counted), never a failed or slow prediction. One thread
writes what is queued every ``flush_every_s``, prunes rows older than the retention in
bounded batches once an hour, and refreshes the live-accuracy gauges of the serving version.
Nothing here logs a text: failures name counts and the error type only. With
``ingest.redact_pii`` on, the runtime passes a ``redact`` function: the writer thread (not
the request) applies it before a text is hashed or stored, so the log holds what the
sample store would hold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from daemon.metrics import Metrics
from storage.models import utcnow
from storage.predictions import NewPrediction, live_accuracy, prune_predictions, record_predictions

__all__ = ["PredictionLog", "text_hash"]

logger = logging.getLogger(__name__)

_PRUNE_EVERY_S = 3600.0
_LIVE_EVERY_S = 30.0


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PredictionLog:
    """A bounded queue of answers and the thread that stores them."""

    def __init__(self, engine: Engine, metrics: Metrics, *, serving_version: Callable[[], str | None],
                 log_texts: bool = False, retention_days: int = 30, max_queue: int = 50_000,
                 batch: int = 1000, flush_every_s: float = 0.5, oos_label: str | None = None,
                 redact: Callable[[str], str] | None = None) -> None:
        self.engine = engine
        self._redact = redact
        self.metrics = metrics
        self.log_texts = log_texts
        self.retention = timedelta(days=retention_days)
        self.batch = batch
        self.flush_every_s = flush_every_s
        self._serving_version = serving_version
        #: An abstention on a text labelled this later was right (``evaluation.oos_label``).
        self.oos_label = oos_label
        self._queue: deque[NewPrediction] = deque()
        self._max_queue = max_queue
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_prune = 0.0
        self._next_live = 0.0

    # ------------------------------------------------------------------ request path

    def submit(self, version: str, texts: list[str], ids: list[str], labels: list[str | None],
               confidences: list[float], abstained: list[bool]) -> None:
        """Queue one request's answers; drops them (counted) when the queue is full."""
        # With redaction the raw text rides in the queue until the writer thread redacts it.
        hashed = self._redact is None
        rows = [NewPrediction(request_id=rid, version=version, label=label, confidence=confidence,
                              abstained=unsure, text_hash=text_hash(text) if hashed else "",
                              text=text if self.log_texts or not hashed else None)
                for text, rid, label, confidence, unsure in zip(texts, ids, labels, confidences, abstained,
                                                                 strict=True)]
        with self._lock:
            room = self._max_queue - len(self._queue)
            kept = rows[:max(0, room)]
            self._queue.extend(kept)
        if len(kept) < len(rows):
            self.metrics.prediction_log_dropped.inc(len(rows) - len(kept))

    # ------------------------------------------------------------------ writer thread

    def start(self) -> PredictionLog:
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Store what is queued, then stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def flush(self) -> int:
        """Store everything queued now (the thread does this on its own); returns rows stored."""
        stored = 0
        while True:
            with self._lock:
                rows = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            if not rows:
                return stored
            try:
                if self._redact is not None:
                    rows = [self._redacted(row) for row in rows]
                with Session(self.engine) as session:
                    record_predictions(session, rows)
            except Exception as exc:  # noqa: BLE001 - a log write must never take serving down
                self.metrics.prediction_log_failures.inc(len(rows))
                logger.warning("prediction log: %d predictions not stored: %s", len(rows), type(exc).__name__)
                return stored
            stored += len(rows)
            self.metrics.predictions_logged.inc(len(rows))

    def _redacted(self, row: NewPrediction) -> NewPrediction:
        assert self._redact is not None and row.text is not None
        text = self._redact(row.text)
        return dataclasses.replace(row, text_hash=text_hash(text), text=text if self.log_texts else None)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_every_s)
            self._wake.clear()
            self.flush()
            now = time.monotonic()
            if now >= self._next_prune:
                self._next_prune = now + _PRUNE_EVERY_S
                self.prune()
            if now >= self._next_live:
                self._next_live = now + _LIVE_EVERY_S
                self.refresh_live_accuracy()
        self.flush()

    def prune(self, max_batches: int = 20) -> int:
        """Delete predictions older than the retention, a batch per transaction and at most
        ``max_batches`` per pass (a backlog goes over several passes, with flushes between);
        returns how many."""
        removed = 0
        try:
            with Session(self.engine) as session:
                for _ in range(max_batches):
                    n = prune_predictions(session, older_than=utcnow() - self.retention, batch=self.batch)
                    removed += n
                    if n < self.batch:
                        break
                else:
                    self._next_prune = time.monotonic() + 10 * self.flush_every_s  # more left: soon again
        except Exception as exc:  # noqa: BLE001 - retried at the next prune
            logger.warning("prediction log: pruning failed: %s", type(exc).__name__)
        if removed:
            self.metrics.predictions_pruned.inc(removed)
        return removed

    def refresh_live_accuracy(self) -> None:
        """The serving version's accuracy on answers whose label has arrived since."""
        version = self._serving_version()
        if version is None:
            return
        try:
            with Session(self.engine) as session:
                found = live_accuracy(session, [version], oos_label=self.oos_label).get(version)
        except Exception as exc:  # noqa: BLE001 - the gauge keeps its last value
            logger.warning("prediction log: live accuracy not read: %s", type(exc).__name__)
            return
        self.metrics.set_live_accuracy(found.joined if found else 0, found.accuracy if found else None)
