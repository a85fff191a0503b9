"""Promotion events on ``<prefix>.promotions``, so downstream services learn of a new model at once."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError

from daemon.config import KafkaSettings

__all__ = ["EventPublisher", "KafkaEventPublisher", "PublishError"]

logger = logging.getLogger(__name__)


class PublishError(Exception):
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
                self._producer = KafkaProducer(
                    bootstrap_servers=self.kafka.bootstrap_servers, client_id=f"{self.kafka.client_id}-events",
                    **self.kafka.client_security_options(),
                )
            future = self._producer.send(self.topic, key=str(event.get("version", "")).encode(),
                                         value=json.dumps(event, sort_keys=True).encode("utf-8"))
            future.get(timeout=self.timeout_s)
        except KafkaError as exc:
            raise PublishError(f"promotion event for {event.get('version')} not delivered to {self.topic}: {exc}") from exc

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=5)
