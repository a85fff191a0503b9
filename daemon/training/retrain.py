"""Single-flight retraining: at most one cycle runs; asking during a run returns that run.

Every trigger (schedule, volume, operator) reaches :meth:`RetrainCoordinator.request`
through :class:`daemon.training.scheduler.Triggers`, so overlap is impossible whoever asks.
The coordinator also owns what is true of runs as a whole: the in-progress gauge,
the outcome counters and the duration histogram.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from daemon.errors import DaemonError
from daemon.metrics import Metrics
from daemon.training.lifecycle import Lifecycle, TrainerLease
from learners.handoff import Progress

__all__ = ["RetrainCoordinator", "RetrainRefused", "RetrainTicket"]

logger = logging.getLogger(__name__)


def _return_freed_memory() -> None:
    """Hand the memory a cycle freed back to the OS (glibc keeps it otherwise).

    A cycle loads two models and scores every held-out sample; what it frees stays in
    glibc's arenas, so without this the daemon's resident set climbs by a few tens of
    MiB per retrain over a long run (``benchmarks/soak.py``). No-op off glibc.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RetrainRefused(DaemonError):
    """No run was started; the message says why (shutting down, not the trainer)."""


@dataclass(frozen=True)
class RetrainTicket:
    run_id: int
    started: bool  # False: a run was already active and this is it


class RetrainCoordinator:
    """Runs lifecycle cycles on a background thread, one at a time."""

    def __init__(self, lifecycle: Lifecycle, *, metrics: Metrics | None = None,
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        self.lifecycle = lifecycle
        self.metrics = metrics or lifecycle.metrics
        self.on_progress = on_progress
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._run_id: int | None = None
        self._closed = False
        #: Checked under the lock right before a run starts (the trigger's own check
        #: may be stale by then). None: no lease (tests, tools).
        self.lease: TrainerLease | None = None
        self.last_progress: Progress | None = None

    @property
    def active_run(self) -> int | None:
        with self._lock:
            return self._run_id if self._thread is not None and self._thread.is_alive() else None

    def request(self, *, trigger: str, requested_by: str | None = None) -> RetrainTicket:
        """Start a run, or return the active one.

        Raises
        ------
        RetrainRefused
            The daemon is shutting down, or it does not hold the training lease.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._run_id is not None:
                return RetrainTicket(self._run_id, started=False)
            if self._closed:
                raise RetrainRefused("the daemon is shutting down")
            if self.lease is not None and not self.lease.held:
                raise RetrainRefused("this daemon does not hold the training lease")
            run_id = self.lifecycle.begin_run(trigger=trigger, requested_by=requested_by)
            self._run_id = run_id
            self._thread = threading.Thread(target=self._execute, args=(run_id,), name=f"retrain-{run_id}",
                                            daemon=True)
            self.metrics.training_in_progress.set(1)
            self._thread.start()
            logger.info("retrain run %d started (trigger=%s)", run_id, trigger)
            return RetrainTicket(run_id, started=True)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the active run ends; True if none is running afterwards."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            return not thread.is_alive()
        return True

    def close(self) -> None:
        """Accept no new runs (shutdown); an active run carries on until waited for or cancelled."""
        with self._lock:
            self._closed = True
        self.lifecycle.shutting_down.set()

    def cancel(self, reason: str) -> None:
        """Cancel the active run, if any (it ends recorded as cancelled, nothing published)."""
        if self.active_run is not None:
            logger.warning("cancelling retrain run %s: %s", self._run_id, reason)
            self.lifecycle.cancel(reason)

    def _execute(self, run_id: int) -> None:
        def progress(report: Progress) -> None:
            self.last_progress = report
            self.metrics.training_examples_per_second.set(report.examples_per_second)
            if self.on_progress is not None:
                self.on_progress(report)

        self.last_progress = None
        started = time.monotonic()
        try:
            run = self.lifecycle.execute(run_id, on_progress=progress)
            status, outcome = run.status, run.outcome
        except Exception:  # noqa: BLE001 - e.g. the database is gone and even the failure cannot be recorded
            # The run stays "running" in the database until a trainer takes over
            # (this one after a restart) and records it as interrupted.
            logger.exception("retrain run %d ended without its end being recorded", run_id)
            status, outcome = "failed", None
        finally:
            self.metrics.training_in_progress.set(0)
        # Counted before anything slow: a client that has seen the run end in the database
        # scrapes next, and must find it counted.
        self.metrics.observe_run(status=status, outcome=outcome, seconds=time.monotonic() - started,
                                 finished_at=time.time())
        _return_freed_memory()
