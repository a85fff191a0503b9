"""The daemon process: wires settings, database, broker, ingestion, training, serving and the HTTP server.

Everything that touches the outside world is built here, in the entrypoint, and
passed down. :class:`Daemon` is also what the demo and the integration tests run,
so they exercise exactly the production wiring.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn
from sqlalchemy import Engine
from sqlmodel import Session

from daemon import failpoints
from daemon.config import KafkaSettings, Settings
from daemon.control.api import Readiness, create_app
from daemon.control.plane import ControlOperations
from daemon.file_safety import PRIVATE_DIR, permission_warnings
from daemon.governance.retention import RetentionJob
from daemon.ingest.broker import EmbeddedBroker, create_topics
from daemon.ingest.consumer import Ingestor
from daemon.metrics import Metrics
from storage.engine import ensure_schema_current, make_engine, upgrade
from storage.errors import SchemaError

if TYPE_CHECKING:
    from daemon.serving.prediction_log import PredictionLog
    from daemon.serving.predictor import Predictor
    from daemon.training.drift import DriftMonitor
    from daemon.training.lease import LeaseKeeper
    from daemon.training.lifecycle import Lifecycle
    from daemon.training.retrain import RetrainCoordinator
    from daemon.training.scheduler import RetrainScheduler, Triggers

__all__ = ["Daemon", "lifelong_version", "resolve_token", "token_file"]

logger = logging.getLogger(__name__)

_SCHEMA_RECHECK_S = 30.0


def token_file(settings: Settings) -> Path:
    """Where a generated API token is kept for the CLI on the same machine."""
    return settings.data_dir / "api-token"


def resolve_token(settings: Settings) -> str:
    """``api.token`` if configured; otherwise a random token kept in ``<data_dir>/api-token`` (mode 0600).

    Outside development, set ``api.token`` (``LIFELONG_API__TOKEN``) from a secret store.
    """
    if settings.api.token is not None:
        return settings.api.token.get_secret_value()
    path = token_file(settings)
    if path.is_file():
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    logger.warning("api.token is not set; generated one in %s", path)
    return token


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
        self._api_thread: threading.Thread | None = None
        self._schema_ok = False
        self._schema_checked_at = 0.0
        self.token = ""
        # The learning side, built in start() (its imports pull in torch).
        self.lifecycle: Lifecycle | None = None
        self.predictor: Predictor | None = None
        self.coordinator: RetrainCoordinator | None = None
        self.lease: LeaseKeeper | None = None
        self.triggers: Triggers | None = None
        self.scheduler: RetrainScheduler | None = None
        #: The drift trigger's detectors (drift.enabled).
        self.drift: DriftMonitor | None = None
        #: Answers of /v1/predict on their way to the database (serving.log_predictions).
        self.prediction_log: PredictionLog | None = None
        #: The retention pass (ingest.retention_days), run by the scheduler on the trainer.
        self.retention: RetentionJob | None = None
        #: The operations behind the control API, over the parts above.
        self.control: ControlOperations | None = None

    # ------------------------------------------------------------------ start / stop

    def start(self) -> Daemon:
        """Check the schema, start the embedded broker if needed, then ingestion and the API.

        Raises
        ------
        SchemaError
            The database schema is behind and ``database.auto_migrate`` is off.
        """
        s = self.settings
        for hook in failpoints.armed_test_hooks():
            logger.warning("fault-test hook set (never set this in production): %s", hook)
        if s.training.worker_start == "forkserver":
            from learners.worker import warm_up

            warm_up(s.training.strategy.name)  # its imports run beside the daemon's own start-up
        s.data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        self.engine = make_engine(s.database_url, busy_timeout_ms=s.database.busy_timeout_ms, echo=s.database.echo)
        if s.database.auto_migrate:
            upgrade(self.engine)
        ensure_schema_current(self.engine)
        self._schema_ok, self._schema_checked_at = True, time.monotonic()

        kafka = s.kafka
        if kafka.embedded:
            self.broker = EmbeddedBroker(log_path=s.data_dir / "broker.log").start()
            create_topics(self.broker.bootstrap_servers, [*kafka.topics, kafka.promotions_topic])
            kafka = kafka.model_copy(update={"bootstrap_servers": [self.broker.bootstrap_servers]})
            self.settings = s = s.model_copy(update={"kafka": kafka})
            logger.info("embedded broker at %s (in-memory: its data ends with this process)",
                        self.broker.bootstrap_servers)

        self.metrics.build_info.labels(version=lifelong_version()).set(1)
        self.ingestor = Ingestor(kafka=kafka, ingest=s.ingest, engine=self.engine, metrics=self.metrics)
        control = self._build_learning(kafka)
        self._spawn("ingest", self.ingestor.run, self.stop_event)
        control.lease.tick()
        control.scheduler.start()
        self.token = resolve_token(s)
        for warning in permission_warnings(s):
            logger.warning("%s", warning)
        self._start_api(control)
        logger.info("lifelong %s running: topics=%s database=%s api=%s", lifelong_version(), kafka.topics,
                    self.engine.url.render_as_string(hide_password=True), self.api_url)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop consuming after the batch in hand is stored, settle the retrain, stop the API, then the broker.

        A running retrain is cancelled or allowed to finish per ``training.on_shutdown``
        (finish waits at most ``training.shutdown_grace_s``, then cancels). Either way
        the run ends recorded and nothing half-written is left as a version.
        """
        self.stop_event.set()
        if self.scheduler is not None:
            self.scheduler.stop_triggers()  # the lease renewal keeps running until the retrain is settled
        self._settle_retrain()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.lease is not None:
            if self.coordinator is not None and self.coordinator.active_run is not None:
                logger.error("retrain run %s is still running; the training lease is left to expire",
                             self.coordinator.active_run)
            else:
                self.lease.release()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
            if thread.is_alive():
                logger.error("thread %s did not stop within %.0fs", thread.name, timeout_s)
        self._threads.clear()
        if self._server is not None:
            self._server.should_exit = True
            if self._api_thread is not None:
                self._api_thread.join(timeout=10)  # requests in flight finish (and queue their answers) first
        if self.prediction_log is not None:
            self.prediction_log.close()  # what the last requests answered is stored before the database goes
        if self.lifecycle is not None:
            # Queued promotion events go out before the (embedded) broker stops; an action
            # still in flight on the closing API publishes its event directly.
            self.lifecycle.close()
        if self.broker is not None:
            self.broker.stop()
        if self.engine is not None:
            self.engine.dispose()
        logger.info("lifelong stopped")

    def _settle_retrain(self) -> None:
        coordinator = self.coordinator
        if coordinator is None:
            return
        coordinator.close()
        if coordinator.active_run is None:
            return
        training = self.settings.training
        if training.on_shutdown == "finish":
            logger.info("waiting up to %.0fs for retrain run %s to finish (training.on_shutdown=finish)",
                        training.shutdown_grace_s, coordinator.active_run)
            if coordinator.wait(training.shutdown_grace_s):
                return
            coordinator.cancel("shutdown: training.shutdown_grace_s ran out")
        else:
            coordinator.cancel("shutdown (training.on_shutdown=cancel)")
        if not coordinator.wait(120):
            logger.error("retrain run did not end within 120s of its cancellation")

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s, shutting down", signal.Signals(signum).name)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        # `kill -USR1 <pid>` writes every thread's stack to stderr, from C, even when the
        # interpreter is stuck: what a shutdown that hangs needs to be diagnosed.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
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

    def _build_learning(self, kafka: KafkaSettings) -> ControlOperations:
        # Imported here: the learning stack pulls in torch, which ingest-only tools never need.
        from daemon.serving.events import KafkaEventPublisher
        from daemon.serving.predictor import Predictor
        from daemon.training.lease import LeaseKeeper
        from daemon.training.lifecycle import Lifecycle
        from daemon.training.retrain import RetrainCoordinator
        from daemon.training.scheduler import RetrainScheduler, Triggers
        from storage.artifacts import ArtifactStore

        s = self.settings
        engine = self._engine()
        store = ArtifactStore(s.data_dir / "models")
        predictor = Predictor(store, batch_size=s.evaluation.batch_size, top_k=s.serving.top_k,
                              abstain=s.serving.abstain)
        lifecycle = Lifecycle(settings=s, engine=engine, store=store, predictor=predictor,
                              publisher=KafkaEventPublisher(kafka), metrics=self.metrics)
        coordinator = RetrainCoordinator(lifecycle, metrics=self.metrics)
        lease = LeaseKeeper(engine, ttl_s=s.training.lease_ttl_s, metrics=self.metrics,
                            on_acquired=lambda: lifecycle.take_over_training(active_run=coordinator.active_run),
                            on_lost=lambda: coordinator.cancel("lost the training lease"))
        lifecycle.lease = coordinator.lease = lease
        triggers = Triggers(coordinator=coordinator, lease=lease, engine=engine, schedule=s.schedule,
                            metrics=self.metrics)
        drift = None
        if s.drift.enabled:
            from daemon.training.drift import DriftMonitor

            drift = DriftMonitor(engine, self.metrics, s.drift,
                                 fire=lambda who: triggers.fire("drift", requested_by=who),
                                 reference_embeddings=lambda version, watermark, n: _reference_embeddings(
                                     engine, predictor, version, watermark, n))
            predictor.embeddings = drift.wants_embeddings
        scheduler = RetrainScheduler(triggers=triggers, lease=lease, follow_production=lifecycle.sync_serving,
                                     follow_every_s=s.serving.follow_production_s, drift=drift,
                                     drift_every_s=s.drift.check_s)
        # One deleter per database: the daemon that holds the training lease.
        self.retention = RetentionJob(engine, self.metrics, retention_days=s.ingest.retention_days,
                                      batch=s.ingest.retention_batch, should_run=lambda: lease.held)
        scheduler.every(s.ingest.retention_every_s, self.retention.run_once, job_id="retention",
                        name="delete data older than ingest.retention_days")
        self.predictor, self.lifecycle, self.coordinator = predictor, lifecycle, coordinator
        self.lease, self.triggers, self.scheduler = lease, triggers, scheduler
        self.drift = drift
        served = lifecycle.sync_serving()
        logger.info("production model: %s", served or "none yet")
        ingestor = self.ingestor
        if s.serving.log_predictions:
            from daemon.serving.prediction_log import PredictionLog

            self.prediction_log = PredictionLog(engine, self.metrics, serving_version=lambda: predictor.version,
                                                log_texts=s.serving.log_texts,
                                                retention_days=min(s.serving.prediction_retention_days,
                                                                   s.ingest.retention_days or 36_500),
                                                oos_label=s.evaluation.oos_label,
                                                redact=self._redact_function()).start()
        self.control = ControlOperations(
            settings=s, engine=engine, metrics=self.metrics,
            ingest_health=lambda: ingestor.health if ingestor is not None else None,
            predictor=predictor, lifecycle=lifecycle, coordinator=coordinator, lease=lease,
            triggers=triggers, scheduler=scheduler, prediction_log=self.prediction_log, drift=drift)
        return self.control

    def _redact_function(self) -> Callable[[str], str] | None:
        """The ingestor's redactor as ``text -> text`` for the prediction log (counted the same way)."""
        redactor = self.ingestor.redactor if self.ingestor is not None else None
        if redactor is None:
            return None
        counter = self.metrics.pii_redacted

        def redact(text: str) -> str:
            redacted = redactor.redact(text)
            for entity, n in redacted.found.items():
                counter.labels(entity=entity).inc(n)
            return redacted.text

        return redact

    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("the daemon is not started")
        return self.engine

    def _start_api(self, control: ControlOperations) -> None:
        ingestor = self.ingestor
        if ingestor is None:  # pragma: no cover - start() builds it first
            raise RuntimeError("ingestor not built")
        app = create_app(
            metrics=self.metrics,
            readiness=Readiness(ingest=lambda: ingestor.health, schema_current=self._schema_current),
            version=lifelong_version(),
            token=self.token,
            control=control,
            max_batch=self.settings.serving.max_batch,
            max_text_chars=self.settings.serving.max_text_chars,
            max_body_bytes=self.settings.api.max_body_bytes,
        )
        config = uvicorn.Config(
            app, host=self.settings.api.host, port=self.settings.api.port, log_config=None, access_log=False,
            lifespan="off",
        )
        self._server = server = uvicorn.Server(config)
        self._api_thread = thread = threading.Thread(target=server.run, name="api", daemon=True)
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


def _reference_embeddings(engine: Engine, predictor: Predictor, version: str, watermark: int,
                          n: int) -> list[list[float]] | None:
    """Embeddings of up to ``n`` of production's newest held-out texts (labels it knows), by the
    serving model; None while ``version`` is not the one serving or there are too few."""
    from learners.inference import predict
    from storage.samples import heldout_examples

    serving = predictor.serving
    if serving is None or serving.version != version:
        return None
    known = set(serving.loaded.model.labels)
    with Session(engine) as session:
        held = heldout_examples(session, labels=known, up_to_id=watermark, newest=n)
    if len(held) < 2:
        return None
    return predict(serving.loaded, [e.text for e in held], batch_size=predictor.batch_size, embeddings=True).embeddings
