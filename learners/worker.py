"""Training in a separate process.

kafka-python 3 keeps its network IO on a background thread; a long CPU-bound training
step in the daemon's process would starve it (the GIL) until connections time out.
So a run happens in a child process that inherits no threads or sockets from the
daemon. By default it is forked from a fork server (:func:`warm_up`): a process started
once, before any run, that imported torch, transformers and the learner, so that a run
starts in a fraction of a second instead of paying 10-20 s of imports each time;
``start_method="spawn"`` starts a fresh interpreter per run instead (no resident server,
every run pays the imports). The child reports progress over a queue and writes into a hidden partial
directory next to the output; only after it has reported success does the parent
rename that directory into place. A crash, a kill (the OOM killer included), a
timeout or a cancellation therefore ends the run as :class:`TrainingFailed` with
nothing half-written where a version is expected.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import multiprocessing
import os
import queue as queue_module
import shutil
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from learners.errors import TrainingFailed
from learners.handoff import Progress

if TYPE_CHECKING:  # imported where used: warm_up must not wait for torch
    from learners.train import TrainingResult, TrainingSpec

__all__ = ["PARTIAL_MARKER", "START_METHODS", "StartMethod", "TrainingWorker", "remove_partial_outputs", "warm_up"]

logger = logging.getLogger(__name__)

#: Part of the name of a directory a run is still writing (or a dead run left behind).
PARTIAL_MARKER = ".partial-"
#: prctl option: the signal this process gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
#: Fault tests only: the largest file the worker may write (RLIMIT_FSIZE), standing in for
#: a full disk without needing a mount. Unset in production.
MAX_FILE_BYTES_ENV = "LIFELONG_TEST_WORKER_MAX_FILE_BYTES"


StartMethod = Literal["forkserver", "spawn"]
#: How a training process starts; see the module docstring.
START_METHODS: tuple[StartMethod, ...] = ("forkserver", "spawn")


def _preload(strategy: str) -> list[str]:
    """Modules the fork server imports once: the program's main script (each run would
    otherwise run it again, as ``spawn`` does: 3 s for ``lifelong``'s), the worker (torch,
    transformers) and, for the strategies built on Avalanche, Avalanche too (the slda
    default never needs it)."""
    return ["__main__", "learners.train", "learners.worker",
            *([] if strategy == "slda" else ["learners.strategies"])]


def _context(start_method: StartMethod, strategy: str) -> Any:
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        # Takes effect when the server starts (the first run, or warm_up); later calls are no-ops.
        context.set_forkserver_preload(_preload(strategy))
    return context


def warm_up(strategy: str) -> None:
    """Start the fork server now, so that its imports overlap the daemon's start-up
    instead of delaying the first retrain. Returns at once; the imports run in the server."""
    from multiprocessing import forkserver

    _context("forkserver", strategy)
    forkserver.ensure_running()


def remove_partial_outputs(directory: Path) -> list[Path]:
    """Delete what interrupted runs left in ``directory``; returns what was removed."""
    removed = []
    if directory.is_dir():
        for path in directory.iterdir():
            if path.name.startswith(".") and PARTIAL_MARKER in path.name:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


class _ForwardingHandler(logging.Handler):
    """Sends the child's log records to the parent, which logs them with its own handlers.

    The daemon's log format (plain or one JSON object per line) then covers the
    training process too, instead of the child writing its own lines to stderr.
    """

    def __init__(self, events: Any) -> None:
        super().__init__(level=logging.WARNING)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.events.put(("log", {"name": record.name, "levelno": record.levelno, "levelname": record.levelname,
                                     "msg": record.getMessage()[:4000], "created": record.created,
                                     "worker_pid": os.getpid()}))
        except Exception:  # noqa: BLE001 - logging must never break training
            self.handleError(record)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, owned by someone else
        return True
    return True


def _die_with_parent(daemon_pid: int) -> None:
    """End this process as soon as the daemon that asked for it is gone.

    A daemon killed with SIGKILL (OOM killer, ``kill -9``) runs no cleanup, and an
    orphaned worker would go on training for an hour and write a candidate into the
    store that the restarted daemon is cleaning. The direct parent is the daemon
    (spawn) or the fork server, which exits when the daemon's end of its pipe closes.
    On Linux the kernel delivers SIGKILL the moment that parent dies
    (``PR_SET_PDEATHSIG``); elsewhere, and as a fallback, a thread checks every half
    second whether the parent changed or the daemon is gone.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
            pass
    if os.getppid() != parent or not _alive(daemon_pid):  # died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent and _alive(daemon_pid):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _apply_test_file_limit(limit: str | None) -> None:
    """With :data:`MAX_FILE_BYTES_ENV` set in the parent, writes past that size fail with
    EFBIG, as on a full disk. (Read by the parent: a fork server's environment is the one
    it started with.)"""
    if limit:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write (OSError) instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))


def _child_main(spec: TrainingSpec, events: Any, cancel: Any, daemon_pid: int, max_file_bytes: str | None) -> None:
    """Entry point of the training process."""
    from learners.train import train_candidate

    _die_with_parent(daemon_pid)
    _apply_test_file_limit(max_file_bytes)
    root = logging.getLogger()
    root.handlers[:] = [_ForwardingHandler(events)]
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)  # library warnings too, through the same path
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a run stops

    def report(progress: Progress) -> None:
        events.put(("progress", dataclasses.asdict(progress)))

    try:
        result = train_candidate(spec, progress=report, cancelled=cancel.is_set)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        events.put(("error", {"type": type(exc).__name__, "message": str(exc)[:2000],
                              "traceback": traceback.format_exc()[-4000:]}))
        events.close()
        events.join_thread()
        os._exit(1)
    events.put(("result", result.to_dict()))
    events.close()
    events.join_thread()


class TrainingWorker:
    """Runs one :class:`TrainingSpec` in a child process.

    >>> worker = TrainingWorker(spec, timeout_s=3600, on_progress=print)  # doctest: +SKIP
    >>> result = worker.run()  # doctest: +SKIP
    """

    def __init__(
        self,
        spec: TrainingSpec,
        *,
        timeout_s: float,
        on_progress: Callable[[Progress], None] | None = None,
        poll_s: float = 0.2,
        cancel_grace_s: float = 15.0,
        start_method: StartMethod = "forkserver",
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.spec = spec
        self.timeout_s = timeout_s
        self.on_progress = on_progress
        self.poll_s = poll_s
        self.cancel_grace_s = cancel_grace_s
        self._cancel_requested_at: float | None = None
        if start_method not in START_METHODS:
            raise ValueError(f"start_method must be one of {START_METHODS}, got {start_method!r}")
        self._context = _context(start_method, spec.strategy.name)
        self._cancel = self._context.Event()
        self._process: Any = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def cancel(self) -> None:
        """Ask the run to stop after the current step; :meth:`run` then raises ``cancelled``.

        A child that has not stopped ``cancel_grace_s`` later (busy loading a model,
        or stuck) is terminated: a shutdown must not wait on it.
        """
        if self._cancel_requested_at is None:
            self._cancel_requested_at = time.monotonic()
        self._cancel.set()

    def run(self) -> TrainingResult:
        """Train and return the result, or raise :class:`TrainingFailed` with the reason.

        Reasons: ``output_exists``, ``error`` (also a missing parent or base model directory) (an exception in training, message kept),
        ``killed`` (a signal, e.g. the OOM killer), ``crashed`` (a non-zero exit with no
        report), ``timeout``, ``cancelled``.
        """
        for source in (self.spec.parent_dir, self.spec.base_model):
            # Fail before paying for a process start (seconds of imports) on a typo'd path.
            if source is not None and not Path(source).is_dir():
                raise TrainingFailed("error", f"ModelLoadError: model directory {source} does not exist "
                                              "or is not a directory")
        final = Path(self.spec.output_dir)
        if final.exists():
            raise TrainingFailed("output_exists", f"{final} already exists")
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.parent / f".{final.name}{PARTIAL_MARKER}{uuid.uuid4().hex[:8]}"
        child_spec = dataclasses.replace(self.spec, output_dir=partial)
        events = self._context.Queue()
        self._process = self._context.Process(
            target=_child_main, name="lifelong-training", daemon=True,
            args=(child_spec, events, self._cancel, os.getpid(), os.environ.get(MAX_FILE_BYTES_ENV)),
        )
        try:
            result = self._supervise(events)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        finally:
            events.close()
        if result.status == "skipped":
            shutil.rmtree(partial, ignore_errors=True)
            return result
        os.replace(partial, final)
        return dataclasses.replace(result, output_dir=str(final))

    def _supervise(self, events: Any) -> TrainingResult:
        from learners.train import TrainingResult

        process = self._process
        process.start()
        deadline = time.monotonic() + self.timeout_s
        outcome: tuple[str, Any] | None = None
        while outcome is None:
            try:
                kind, payload = events.get(timeout=self.poll_s)
            except queue_module.Empty:
                if not process.is_alive():
                    outcome = self._drain(events) or ("exit", process.exitcode)
                elif time.monotonic() > deadline:
                    self._stop(process)
                    raise TrainingFailed("timeout", f"training exceeded {self.timeout_s:.0f}s")
                elif (self._cancel_requested_at is not None
                      and time.monotonic() - self._cancel_requested_at > self.cancel_grace_s):
                    self._stop(process)
                    raise TrainingFailed("cancelled", "training was cancelled (worker terminated)")
                continue
            if kind == "progress":
                if self.on_progress is not None:
                    self.on_progress(Progress(**payload))
            elif kind == "log":
                logging.getLogger(payload["name"]).handle(logging.makeLogRecord(payload))
            else:
                outcome = (kind, payload)
        process.join(timeout=30)
        if process.is_alive():
            self._stop(process)
        kind, payload = outcome
        if self._cancel.is_set():
            # A cancelled run may still report a (shortened) result: it is not a candidate.
            raise TrainingFailed("cancelled", "training was cancelled")
        if kind == "result":
            return TrainingResult(**payload)
        if kind == "error":
            raise TrainingFailed("error", f"{payload['type']}: {payload['message']}")
        code = payload
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            raise TrainingFailed("killed", f"training process killed by {name} (out of memory?)")
        raise TrainingFailed("crashed", f"training process exited with status {code} without a result")

    @staticmethod
    def _drain(events: Any) -> tuple[str, Any] | None:
        last = None
        while True:
            try:
                kind, payload = events.get(timeout=0.5)
            except queue_module.Empty:
                return last
            if kind == "log":
                logging.getLogger(payload["name"]).handle(logging.makeLogRecord(payload))
            elif kind != "progress":
                last = (kind, payload)

    @staticmethod
    def _stop(process: Any) -> None:
        process.terminate()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join(timeout=10)
