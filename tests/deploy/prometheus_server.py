"""A real Prometheus server, started and stopped by a test.

promtool proves that rules and configs parse, but only the server itself shows that a
dashboard query is valid PromQL, that the rule file loads and evaluates, and that the
daemon's /metrics is scrapeable end to end. So the deploy tests run the real binary
(Debian's ``prometheus`` package; ``.ci/run`` installs it) on a free loopback port
with its own throw-away data directory. A missing binary is a failure, not a skip: a
skipped monitoring test would hide exactly the breakage it exists to catch.

It also holds the two helpers the alert, dashboard and scrape tests share: the metric
names a PromQL expression reads, and the metric names the daemon really exports.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

__all__ = ["PrometheusServer", "exported_metric_names", "metric_names", "promtool", "require_binary"]

_INSTALL_HINT = "install the Debian package: apt-get install prometheus (.ci/run does this on CI)"


def require_binary(name: str) -> str:
    """The path of ``name`` (``prometheus`` or ``promtool``), or an AssertionError saying how to get it."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"`{name}` is not on PATH; {_INSTALL_HINT}")
    return path


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller asserts on ``returncode`` and shows ``stdout``/``stderr``."""
    return subprocess.run([require_binary("promtool"), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, check=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    """``prometheus`` with ``config`` (a mapping, written as YAML) in ``workdir``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``start`` returns
    once ``/-/ready`` answers 200 (configuration and rule files loaded).
    """

    def __init__(self, config: dict[str, Any], workdir: Path, *, ready_timeout_s: float = 60.0) -> None:
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        self.ready_timeout_s = ready_timeout_s
        self.port = 0
        self._config = config
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        binary = require_binary("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self._config, sort_keys=False), encoding="utf-8")
        # The free port is found by binding and releasing it, so another process can take
        # it in between: retry on a new port when the server exits before it is ready.
        for _attempt in range(3):
            self.port = _free_port()
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    [binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                    stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                )
            if self._wait_ready():
                return self
            if self._process.poll() is None:
                break  # running but never ready: not a port race
        log_tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        self.stop()
        raise AssertionError(f"prometheus did not become ready within {self.ready_timeout_s:.0f}s; log:\n{log_tail}")

    def _wait_ready(self) -> bool:
        process = self._process
        if process is None:  # pragma: no cover - start() sets it
            return False
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP API

    def query(self, expr: str) -> tuple[int, dict[str, Any]]:
        """``POST /api/v1/query``: the HTTP status and the JSON body (Prometheus answers JSON on errors too)."""
        response = httpx.post(f"{self.url}/api/v1/query", data={"query": expr}, timeout=30)
        return response.status_code, response.json()

    def get(self, path: str, **params: str) -> dict[str, Any]:
        """``GET`` an API path that must succeed, e.g. ``/api/v1/rules``; returns its ``data``."""
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path}: {body}")
        return body["data"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- PromQL helpers

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not preceded by a digit, dot or letter (so not the "e3" of 1e3 or the
# "h" of 24h) and not followed by "(" (a function or aggregation).
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*(?![A-Za-z0-9_:]*\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                       "offset", "bool", "inf", "nan", "atan2", "start", "end"})


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (bare identifiers left once strings, label matchers,
    ranges, grouping clauses, functions and keywords are removed)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def exported_metric_names() -> set[str]:
    """Every series name the daemon's /metrics can carry, plus Prometheus's own ``up``.

    From :func:`daemon.metrics.catalog` (histograms as ``_bucket``/``_sum``/``_count``
    too) and the ``process_*`` series its registry really exports on this platform.
    """
    from daemon.metrics import Metrics, catalog

    metrics = Metrics()
    names = {"up"}
    for doc in catalog(metrics):
        names.add(doc.name)
        if doc.type == "histogram":
            names.update(f"{doc.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    for family in metrics.registry.collect():
        names.update(sample.name for sample in family.samples if sample.name.startswith("process_"))
    return names
