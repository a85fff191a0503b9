"""A real ``lifelong run`` under a benchmark's control: start it, feed it, retrain it, ask it.

Why a driver and not the ``Daemon`` class in-process: the learning-quality figures
must come from the product as operators run it — its own process, configured by a
YAML file and ``LIFELONG_*`` variables, fed through Kafka, retrained and queried over
the control API. Nothing here reaches into ``learners/`` or the database.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from daemon.control.client import ApiError, ControlClient
from daemon.ingest.broker import create_topics, free_port
from daemon.ingest.produce import produce_values

__all__ = ["DaemonFailed", "DaemonProcess"]


class DaemonFailed(Exception):
    """The daemon did not start, died, or did not do what was asked in time; one line."""


class DaemonProcess:
    """``python -m daemon --config CONFIG run --migrate`` on a broker the caller owns.

    Use as a context manager: the process is stopped (SIGTERM, then SIGKILL) on every exit.
    """

    def __init__(self, workdir: Path, *, bootstrap_servers: str, topic: str, config: Path | None = None,
                 env: dict[str, str] | None = None, startup_timeout_s: float = 180.0) -> None:
        self.workdir = workdir
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.config = config
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "daemon.log"
        self.startup_timeout_s = startup_timeout_s
        self._env = env or {}
        self._process: subprocess.Popen[bytes] | None = None
        self.client: ControlClient | None = None
        self.sent = 0

    @property
    def pid(self) -> int | None:
        """The daemon's process id while it runs (for resource sampling)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def __enter__(self) -> DaemonProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        create_topics(self.bootstrap_servers, [self.topic, f"{self.topic}.promotions"])
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LIFELONG_")},
            "HF_HUB_OFFLINE": "1",
            "LIFELONG_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "LIFELONG_KAFKA__TOPICS": self.topic,
            "LIFELONG_KAFKA__TOPIC_PREFIX": self.topic,
            "LIFELONG_DATABASE__URL": f"sqlite:///{self.workdir / 'lifelong.db'}",
            "LIFELONG_DATA_DIR": str(self.workdir / "data"),
            "LIFELONG_API__PORT": str(self.port),
            "LIFELONG_API__TOKEN": self.token,
            **self._env,
        }
        command = [sys.executable, "-m", "daemon"]
        if self.config is not None:
            command += ["--config", str(self.config)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen([*command, "run", "--migrate"], env=env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        self.client = ControlClient(self.url, self.token, timeout_s=300.0)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            self._check_alive("while starting")
            try:
                self.client.request("GET", "/v1/status")
                return
            except ApiError:
                time.sleep(0.3)
        raise DaemonFailed(f"the daemon did not answer within {self.startup_timeout_s:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.client is not None:
            self.client.__exit__()
            self.client = None
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def _check_alive(self, doing: str) -> None:
        process = self._process
        if process is not None and process.poll() is not None:
            raise DaemonFailed(f"the daemon exited ({process.returncode}) {doing}: {self._last_log_line()}")

    def _last_log_line(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                     if line.strip()]
        except OSError:
            return f"no log at {self.log_path}"
        return lines[-1].strip()[:500] if lines else f"nothing in {self.log_path}"

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self.client is None:
            raise DaemonFailed("the daemon is not running")
        self._check_alive(f"before {method} {path}")
        try:
            return self.client.request(method, path, body)
        except ApiError as exc:
            self._check_alive(f"during {method} {path}")
            raise DaemonFailed(f"{method} {path}: {exc}") from exc

    # -- feeding -------------------------------------------------------------------------------

    def produce(self, records: Iterable[dict[str, str]]) -> int:
        values = [json.dumps(record, ensure_ascii=False).encode("utf-8") for record in records]
        sent = produce_values(iter(values), bootstrap_servers=self.bootstrap_servers, topic=self.topic)
        self.sent += sent
        return sent

    def wait_stored(self, timeout_s: float) -> None:
        """Until every record sent so far is stored or dead-lettered (the committed offsets cover it)."""
        self._wait(lambda: sum(p["next_offset"] for p in self.api("GET", "/v1/status")["partitions"]) >= self.sent,
                   timeout_s, f"{self.sent} records to be stored")

    # -- training and serving ------------------------------------------------------------------

    def retrain(self, timeout_s: float) -> dict[str, Any]:
        """``POST /v1/retrain`` and wait for the run to end; the run's view."""
        ticket = self.api("POST", "/v1/retrain", {"requested_by": "bench continual"})
        run_id = ticket["run_id"]
        run: dict[str, Any] = {}

        def ended() -> bool:
            nonlocal run
            run = self.api("GET", f"/v1/runs/{run_id}")
            return run["status"] != "running"

        self._wait(ended, timeout_s, f"run {run_id} to finish")
        return run

    def wait_serving(self, version: str | None, timeout_s: float) -> None:
        """Until the predictor serves ``version`` (it follows the production alias)."""
        if version is None:
            return
        self._wait(lambda: self.api("GET", "/v1/status")["serving"] == version, timeout_s,
                   f"{version} to be served")

    def predict(self, texts: list[str], batch: int = 64) -> tuple[list[str | None], set[str]]:
        """Most likely label for ``texts`` through ``/v1/predict`` (an abstention's top
        candidate: accuracy measures the classifier) and the versions that answered."""
        answers, versions = self.answers(texts, batch)
        return [next(iter(p["probabilities"]), None) for p in answers], versions

    def answers(self, texts: list[str], batch: int = 64) -> tuple[list[dict[str, Any]], set[str]]:
        """Every prediction object for ``texts`` (label, abstained, probabilities) and the versions."""
        answers: list[dict[str, Any]] = []
        versions: set[str] = set()
        for start in range(0, len(texts), batch):
            answer = self.api("POST", "/v1/predict", {"texts": texts[start:start + batch]})
            versions.add(answer["version"])
            answers += answer["predictions"]
        return answers, versions

    def _wait(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise DaemonFailed(f"timed out after {timeout_s:.0f}s waiting for {what}; see {self.log_path}")
            time.sleep(0.25)
