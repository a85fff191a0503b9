"""Single-flight retraining: at most one cycle runs; asking during a run returns that run.

Manual requests (API, CLI) and, later, the scheduler's triggers all go through
:meth:`RetrainCoordinator.request`, so overlap is impossible whoever asks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from daemon.lifecycle import Lifecycle
from learners.strategies import Progress

__all__ = ["RetrainCoordinator", "RetrainTicket"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainTicket:
    run_id: int
    started: bool  # False: a run was already active and this is it


class RetrainCoordinator:
    """Runs lifecycle cycles on a background thread, one at a time."""

    def __init__(self, lifecycle: Lifecycle, *, on_progress: Callable[[Progress], None] | None = None) -> None:
        self.lifecycle = lifecycle
        self.on_progress = on_progress
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._run_id: int | None = None
        self.last_progress: Progress | None = None

    @property
    def active_run(self) -> int | None:
        with self._lock:
            return self._run_id if self._thread is not None and self._thread.is_alive() else None

    def request(self, *, trigger: str, requested_by: str | None = None) -> RetrainTicket:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._run_id is not None:
                return RetrainTicket(self._run_id, started=False)
            run_id = self.lifecycle.begin_run(trigger=trigger, requested_by=requested_by)
            self._run_id = run_id
            self._thread = threading.Thread(target=self._execute, args=(run_id,), name=f"retrain-{run_id}",
                                            daemon=True)
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

    def _execute(self, run_id: int) -> None:
        def progress(report: Progress) -> None:
            self.last_progress = report
            if self.on_progress is not None:
                self.on_progress(report)

        self.last_progress = None
        self.lifecycle.execute(run_id, on_progress=progress)
