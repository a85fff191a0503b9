"""The daemon process: wires settings, database, broker, ingestion and the HTTP server.

Everything that touches the outside world is built here, in the entrypoint, and
passed down. :class:`Daemon` is also what the demo and the integration tests run,
so they exercise exactly the production wiring.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from types import FrameType

import uvicorn
from sqlalchemy import Engine

from daemon.api import Readiness, create_app
from daemon.broker import EmbeddedBroker, create_topics
from daemon.config import Settings
from daemon.ingest import Ingestor
from daemon.metrics import Metrics
from storage.engine import ensure_schema_current, make_engine, upgrade
from storage.errors import SchemaError

__all__ = ["Daemon", "lifelong_version"]

logger = logging.getLogger(__name__)

_SCHEMA_RECHECK_S = 30.0


def lifelong_version() -> str:
    try:
        return version("lifelong")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


class Daemon:
    """One lifelong process. ``start()`` returns once everything runs; ``stop()`` undoes it."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.stop_event = threading.Event()
        self.broker: EmbeddedBroker | None = None
        self.engine: Engine | None = None
        self.ingestor: Ingestor | None = None
        self._threads: list[threading.Thread] = []
        self._server: uvicorn.Server | None = None
        self._schema_ok = False
        self._schema_checked_at = 0.0

    # ------------------------------------------------------------------ start / stop

    def start(self) -> Daemon:
        """Check the schema, start the embedded broker if needed, then ingestion and the API.

        Raises
        ------
        SchemaError
            The database schema is behind and ``database.auto_migrate`` is off.
        """
        s = self.settings
        self.engine = make_engine(s.database_url, busy_timeout_ms=s.database.busy_timeout_ms, echo=s.database.echo)
        if s.database.auto_migrate:
            upgrade(self.engine)
        ensure_schema_current(self.engine)
        self._schema_ok, self._schema_checked_at = True, time.monotonic()

        kafka = s.kafka
        if kafka.embedded:
            self.broker = EmbeddedBroker(log_path=s.data_dir / "broker.log").start()
            create_topics(self.broker.bootstrap_servers, kafka.topics)
            kafka = kafka.model_copy(update={"bootstrap_servers": [self.broker.bootstrap_servers]})
            self.settings = s = s.model_copy(update={"kafka": kafka})
            logger.info("embedded broker at %s (in-memory: its data ends with this process)",
                        self.broker.bootstrap_servers)

        self.ingestor = Ingestor(kafka=kafka, ingest=s.ingest, engine=self.engine, metrics=self.metrics)
        self._spawn("ingest", self.ingestor.run, self.stop_event)
        self._start_api()
        logger.info("lifelong %s running: topics=%s database=%s api=%s", lifelong_version(), kafka.topics,
                    self.engine.url.render_as_string(hide_password=True), self.api_url)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop consuming after the batch in hand is stored, stop the API, then the broker."""
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
            if thread.is_alive():
                logger.error("thread %s did not stop within %.0fs", thread.name, timeout_s)
        self._threads.clear()
        if self._server is not None:
            self._server.should_exit = True
        if self.broker is not None:
            self.broker.stop()
        if self.engine is not None:
            self.engine.dispose()
        logger.info("lifelong stopped")

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s, shutting down", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        self.start()
        try:
            self.stop_event.wait()
        finally:
            self.stop()

    # ------------------------------------------------------------------ API

    @property
    def api_url(self) -> str | None:
        server = self._server
        if server is None or not server.started:
            return None
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def _schema_current(self) -> bool:
        if self.engine is not None and time.monotonic() - self._schema_checked_at > _SCHEMA_RECHECK_S:
            try:
                ensure_schema_current(self.engine)
                self._schema_ok = True
            except SchemaError as exc:
                logger.error("%s", exc)
                self._schema_ok = False
            except Exception:  # noqa: BLE001 - an unreachable database is "not ready", not a crash
                self._schema_ok = False
            self._schema_checked_at = time.monotonic()
        return self._schema_ok

    def _start_api(self) -> None:
        ingestor = self.ingestor
        if ingestor is None:  # pragma: no cover - start() builds it first
            raise RuntimeError("ingestor not built")
        app = create_app(
            metrics=self.metrics,
            readiness=Readiness(ingest=lambda: ingestor.health, schema_current=self._schema_current),
            version=lifelong_version(),
        )
        config = uvicorn.Config(
            app, host=self.settings.api.host, port=self.settings.api.port, log_config=None, access_log=False,
            lifespan="off",
        )
        self._server = server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            raise RuntimeError(
                f"API server did not start on {self.settings.api.host}:{self.settings.api.port} (port in use?)"
            )

    def _spawn(self, name: str, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)
