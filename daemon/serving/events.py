"""Promotion events on ``<prefix>.promotions``, so downstream services learn of a new model at once."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError

from daemon.config import KafkaSettings
from daemon.errors import DaemonError

__all__ = ["PRODUCTION_KEY", "EventPublisher", "KafkaEventPublisher", "OrderedEvents", "PublishError"]

#: The key of every promotion event (see KafkaEventPublisher.publish).
PRODUCTION_KEY = b"production"

logger = logging.getLogger(__name__)


class PublishError(DaemonError):
    """The event could not be delivered."""


class EventPublisher(Protocol):
    def publish(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class KafkaEventPublisher:
    """Sends each event as JSON keyed by version; the producer is created on first use."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float = 10.0) -> None:
        self.kafka = kafka
        self.topic = kafka.promotions_topic
        self.timeout_s = timeout_s
        self._producer: KafkaProducer | None = None

    def publish(self, event: dict[str, Any]) -> None:
        """Deliver ``event`` (waits for the broker's acknowledgement).

        Raises
        ------
        PublishError
            The broker did not acknowledge within the timeout.
        """
        try:
            if self._producer is None:
                # kafka-python would otherwise wait 30 s to bootstrap and up to 60 s for
                # metadata; an undeliverable event should fail within our own timeout.
                wait_ms = int(self.timeout_s * 1000)
                self._producer = KafkaProducer(
                    bootstrap_servers=self.kafka.bootstrap_servers, client_id=f"{self.kafka.client_id}-events",
                    bootstrap_timeout_ms=wait_ms, max_block_ms=wait_ms, **self.kafka.client_security_options(),
                )
            # One key for every event: they all land on one partition, so a consumer reads
            # production's moves in the order they happened even on a multi-partition topic.
            future = self._producer.send(self.topic, key=PRODUCTION_KEY,
                                         value=json.dumps(event, sort_keys=True).encode("utf-8"))
            future.get(timeout=self.timeout_s)
        except KafkaError as exc:
            raise PublishError(f"promotion event for {event.get('version')} not delivered to {self.topic}: {exc}") from exc

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=5)


_CLOSE = object()


class OrderedEvents:
    """Delivers events one at a time on its own thread, in the order they were queued.

    Whoever moves production queues the event while still holding the production lock,
    so the topic sees production changes in the order they happened, even when an
    operator's rollback races a gate promotion. Delivery waits for the broker (up to the
    publisher's timeout) after the lock is released: a broker outage delays events, never
    a promotion or a rollback. An event that cannot be delivered is handed to
    ``on_failed`` and dropped (production has moved; the database is the record).
    """

    def __init__(self, publisher: EventPublisher, *, on_failed: Callable[[dict[str, Any], PublishError], None],
                 on_delivered: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._publisher = publisher
        self._on_failed = on_failed
        self._on_delivered = on_delivered
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lifelong-events", daemon=True)
        self._thread.start()

    def put(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for delivery after every event queued before it; never blocks.

        After :meth:`close` (a request still in flight at shutdown) the event is delivered
        at once instead, so that it is not lost with the stopped thread.
        """
        with self._lock:
            if not self._closed:
                self._queue.put(event)
                return
        self._deliver(event)

    def close(self, timeout_s: float = 15.0) -> None:
        """Deliver what is queued for up to ``timeout_s``, then close the publisher.

        Events still undelivered when the time is up are reported to ``on_failed``.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_CLOSE)
        self._thread.join(timeout=timeout_s)
        if not self._thread.is_alive():
            self._publisher.close()
            return
        # The delivery thread is stuck on the broker (it reports that event itself if its
        # publish ever returns); the ones queued behind it are given up on here.
        abandoned = 0
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                break
            if event is not _CLOSE:
                abandoned += 1
                self._on_failed(event, PublishError(f"promotion event for {event.get('version')} not delivered "
                                                    f"within {timeout_s:.0f}s of shutdown"))
            self._queue.task_done()
        logger.error("promotion events undelivered at shutdown: 1 in flight, %d abandoned", abandoned)

    def join(self, timeout_s: float = 30.0) -> bool:
        """Wait until every event queued so far was delivered or failed (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is _CLOSE:
                    return
                self._deliver(event)
            finally:
                self._queue.task_done()

    def _deliver(self, event: dict[str, Any]) -> None:
        try:
            self._publisher.publish(event)
        except PublishError as exc:
            self._on_failed(event, exc)
            return
        except Exception:  # noqa: BLE001 - one bad event must not stop the ones after it
            logger.exception("promotion event for %s not delivered", event.get("version"))
            return
        if self._on_delivered is not None:
            try:
                self._on_delivered(event)
            except Exception as exc:  # noqa: BLE001 - delivered; at worst it is sent again after a restart
                logger.warning("promotion event for %s delivered but not recorded as such: %s",
                               event.get("version"), type(exc).__name__)
