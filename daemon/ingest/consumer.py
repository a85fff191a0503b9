"""Kafka → database ingestion, exactly once into storage.

Each poll's records are validated; the valid ones, the dead letters and the new
per-partition positions are written in one database transaction
(:func:`storage.ingest_store.write_ingest_batch`). The consumer's position lives
in the database: at start and on every partition assignment the consumer seeks to
the stored offsets, whatever Kafka's committed offsets say. Offsets are committed to
Kafka afterwards only so that standard lag tooling sees progress.

Failure handling:

- broker unreachable at start or gone mid-run: kafka-python reconnects in the
  background; the loop keeps polling with backoff and reports not-ready;
- database refuses a batch (locked, read-only, gone): the same batch is retried with
  backoff and nothing is committed anywhere until it is stored, so no offset ever
  advances past an unstored record. If the process stops first, the batch is read
  again after restart from the stored offsets.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine
from sqlmodel import Session

from daemon.config import IngestSettings, KafkaSettings
from daemon.ingest.kafka_diagnosis import AuthFailureWatch
from daemon.ingest.records import Limits, Rejection, validate
from daemon.ingest.redaction import Redactor
from daemon.metrics import Metrics
from storage.errors import StoreUnavailable
from storage.ingest_store import (
    BatchResult,
    NewDeadLetter,
    NewSample,
    PartitionPosition,
    load_logs,
    start_new_log,
    write_ingest_batch,
)
from storage.split import HeldOutPolicy, content_hash
from storage.stats import split_counts

__all__ = ["IngestHealth", "Ingestor"]

logger = logging.getLogger(__name__)

_HEALTH_CHECK_INTERVAL_S = 2.0
#: How long the broker probe waits for an answer.
_PROBE_TIMEOUT_S = 2.0
#: Unanswered probes in a row before the outage is logged as an ERROR (a warning before).
_PROBES_BEFORE_ERROR = 3
_PARTITION_REFRESH_INTERVAL_S = 30.0

ConsumerFactory = Callable[..., KafkaConsumer]


def _make_consumer(**options: Any) -> KafkaConsumer:
    """``KafkaConsumer(**options)`` that cleans up after itself when it cannot connect.

    kafka-python 3.0.12 starts its IO thread before bootstrapping and does not stop
    it when bootstrapping fails, so every failed start would leak a thread and its
    sockets; a long outage at start would grow them without limit.
    """
    consumer = KafkaConsumer.__new__(KafkaConsumer)
    try:
        consumer.__init__(**options)  # type: ignore[misc]
    except BaseException:
        client = getattr(consumer, "_client", None)
        if client is not None:
            client.close()
        raise
    return consumer


@dataclass
class IngestHealth:
    """What readiness reports about ingestion."""

    broker_connected: bool = False
    database_ok: bool = True
    #: The last step failed in an unexpected way (a bug, not an outage); cleared by the next stored batch.
    failing: bool = False
    assigned: list[str] = field(default_factory=list)
    last_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.broker_connected and self.database_ok and not self.failing


class _SeekToStored(ConsumerRebalanceListener):
    """Group mode: every newly assigned partition starts at the database's position."""

    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Nothing is buffered between polls: each poll's records are stored before the
        # next poll, so there is nothing to flush here.
        logger.info("partitions revoked: %s", _names(revoked))

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        logger.info("partitions assigned: %s", _names(assigned))
        self._ingestor._seek_to_stored(list(assigned))


def _names(partitions: Sequence[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


class Ingestor:
    """Consumes the configured topics into the database until told to stop.

    The consumer is created lazily by :meth:`run` (and re-created after a failed
    start), so building an ``Ingestor`` never touches the network.
    """

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        ingest: IngestSettings,
        engine: Engine,
        metrics: Metrics,
        consumer_factory: ConsumerFactory = _make_consumer,
    ) -> None:
        self.kafka = kafka
        self.settings = ingest
        self.engine = engine
        self.metrics = metrics
        self.health = IngestHealth()
        self._consumer_factory = consumer_factory
        self._consumer: KafkaConsumer | None = None
        self._dead_letter_producer: KafkaProducer | None = None
        self._probe_tls: ssl.SSLContext | None = None
        self._limits = Limits(
            max_text_chars=ingest.max_text_chars,
            max_label_chars=ingest.max_label_chars,
            max_id_chars=ingest.max_id_chars,
            max_record_bytes=ingest.max_record_bytes,
        )
        self._policy = HeldOutPolicy(fraction=ingest.heldout_fraction, min_per_label=ingest.heldout_min_per_label)
        self._next_health_check = 0.0
        self._failed_probes = 0
        self._next_partition_refresh = 0.0
        #: Built at start when ``redact_pii`` names entities (Presidio takes ~2 s to load).
        self.redactor: Redactor | None = None
        if ingest.redact_pii:
            self.redactor = Redactor(ingest.redact_pii, phone_regions=ingest.pii_phone_regions)
        self._redacted: Counter[str] = Counter()
        #: Per partition, the stored positions' offset base, and per topic the broker topic id
        #: the stored offsets were read under (see storage.models.ConsumerOffset).
        self._offset_bases: dict[tuple[str, int], int] = {}
        self._topic_ids: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    def run(self, stop: threading.Event) -> None:
        """Ingest until ``stop`` is set; the batch in hand is stored (or abandoned unstored) first."""
        self._refresh_sample_gauges()
        backoff = self.settings.retry_backoff_initial_s
        auth_watch = AuthFailureWatch().install()
        try:
            self._run(stop, auth_watch, backoff)
        finally:
            auth_watch.remove()
        self.close()

    def _run(self, stop: threading.Event, auth_watch: AuthFailureWatch, backoff: float) -> None:
        while not stop.is_set():
            try:
                if self._consumer is None:
                    self._connect()
                    if not self.health.failing and self.health.database_ok:
                        backoff = self.settings.retry_backoff_initial_s
                if self.poll_once(stop) is not None:
                    backoff = self.settings.retry_backoff_initial_s
            except KafkaError as exc:
                auth = auth_watch.take()
                self.metrics.broker_auth_failed.set(int(auth is not None))
                if auth is None:
                    self._note_error(f"kafka: {exc.__class__.__name__}: {exc}")
                else:
                    message = (f"kafka: authentication or TLS failed ({auth}); retrying will not help until "
                               "kafka.security_protocol, kafka.sasl_mechanism and the credentials, or the "
                               "certificates (kafka.ssl_cafile, ssl_certfile, ssl_keyfile) are fixed")
                    if message != self.health.last_error:  # said once, not on every retry
                        self._note_error(message)
                self.health.broker_connected = False
                self.metrics.broker_connected.set(0)
                stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.retry_backoff_max_s)
            except StoreUnavailable as exc:
                # Reading the stored offsets failed (a seek on assignment): a database outage,
                # handled like a failed write. Reconnecting seeks again once it is back.
                self.metrics.store_failures.inc()
                self.metrics.database_ok.set(0)
                self.health.database_ok = False
                self._note_error(str(exc))
                self.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.retry_backoff_max_s)
            except Exception as exc:  # noqa: BLE001 - the ingest thread must not die silently
                # Nothing unstored was committed anywhere, so starting over from the stored
                # offsets with a fresh consumer loses nothing; a record that fails every
                # time keeps the daemon not-ready and the lag growing, loudly, until fixed.
                logger.exception("ingest step failed; reconnecting from the stored offsets in %.1fs", backoff)
                self._note_error(f"unexpected: {exc.__class__.__name__}: {exc}")
                self.health.failing = True
                self.metrics.ingest_failing.set(1)
                self.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.retry_backoff_max_s)

    def close(self) -> None:
        """Close Kafka clients; safe to call twice."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception:  # noqa: BLE001 - closing must not mask the reason we stop
                logger.warning("error closing consumer", exc_info=True)
        producer, self._dead_letter_producer = self._dead_letter_producer, None
        if producer is not None:
            try:
                producer.close(timeout=5)
            except Exception:  # noqa: BLE001
                logger.warning("error closing dead-letter producer", exc_info=True)

    def _connect(self) -> None:
        servers = self.kafka.bootstrap_servers or []
        logger.info("connecting to Kafka %s (assignment=%s)", ",".join(servers), self.kafka.assignment)
        consumer = self._consumer_factory(
            bootstrap_servers=servers,
            client_id=self.kafka.client_id,
            group_id=self.kafka.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.kafka.auto_offset_reset,
            max_poll_records=self.kafka.max_poll_records,
            max_partition_fetch_bytes=self.kafka.max_partition_fetch_bytes,
            fetch_max_bytes=self.kafka.fetch_max_bytes,
            request_timeout_ms=self.kafka.request_timeout_ms,
            max_poll_interval_ms=self.kafka.max_poll_interval_ms,
            bootstrap_timeout_ms=self.kafka.bootstrap_timeout_ms,
            reconnect_backoff_max_ms=self.kafka.reconnect_backoff_max_ms,
            value_deserializer=None,
            key_deserializer=None,
            **self.kafka.client_security_options(),
        )
        self._consumer = consumer
        if self.kafka.assignment == "group":
            consumer.subscribe(topics=self.kafka.topics, listener=_SeekToStored(self))
        self._next_partition_refresh = 0.0
        self.health.broker_connected = True
        self.metrics.broker_connected.set(1)
        self.metrics.broker_auth_failed.set(0)

    # ------------------------------------------------------------------ one step

    def poll_once(self, stop: threading.Event | None = None) -> BatchResult | None:
        """Poll one batch, store it and commit; returns what was stored (``None`` if nothing came)."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("poll_once() before the consumer is connected; call run()")
        now = time.monotonic()
        if self.kafka.assignment == "manual" and now >= self._next_partition_refresh:
            self._assign_all_partitions()
            self._next_partition_refresh = now + _PARTITION_REFRESH_INTERVAL_S
        if now >= self._next_health_check:
            self._check_broker()
            self._next_health_check = now + _HEALTH_CHECK_INTERVAL_S
        if self.kafka.assignment == "manual" and not consumer.assignment():
            # No topic exists yet; wait instead of spinning. (Group mode must keep
            # polling: poll() is what joins the group and brings the assignment.)
            (stop or threading.Event()).wait(self.kafka.poll_timeout_ms / 1000)
            return None
        polled = consumer.poll(timeout_ms=self.kafka.poll_timeout_ms, max_records=self.kafka.max_poll_records)
        if not polled:
            self.health.failing = False  # a clean poll: whatever failed before has passed
            self.metrics.ingest_failing.set(0)
            self._update_lag_from_consumer()
            return None
        if self._start_recreated_logs(polled):
            return None
        started = time.perf_counter()
        samples, letters, positions, count = self._decode(polled)
        self.metrics.records_consumed.inc(count)
        result = self._store(samples, letters, positions, stop)
        if result is None:
            # Stopped before the batch could be stored: rewind so nothing is skipped
            # if this consumer were to go on; the stored offsets are still the truth.
            self._seek_to_stored(list(polled))
            return None
        self._after_store(result, positions, letters)
        self.metrics.batch_duration.observe(time.perf_counter() - started)
        self.health.failing = False
        self.metrics.ingest_failing.set(0)
        return result

    def _decode(
        self, polled: dict[TopicPartition, list[Any]]
    ) -> tuple[list[NewSample], list[NewDeadLetter], list[PartitionPosition], int]:
        samples: list[NewSample] = []
        letters: list[NewDeadLetter] = []
        positions: list[PartitionPosition] = []
        count = 0
        keep = self.settings.dead_letter_raw_bytes
        consumer = self._consumer
        for tp, records in polled.items():
            if not records:
                continue
            count += len(records)
            base = self._offset_bases.get((tp.topic, tp.partition), 0)
            for record in records:
                value = record.value
                checked = validate(value, self._limits)
                if isinstance(checked, Rejection):
                    raw = None if value is None else bytes(value[:keep])
                    if raw is not None and self.redactor is not None:
                        # A bad record's bytes can hold PII too; kept as (lossy) UTF-8 text.
                        redacted = self.redactor.redact(raw.decode("utf-8", errors="replace"))
                        self._redacted.update(redacted.found)
                        raw = redacted.text.encode("utf-8")
                    letters.append(
                        NewDeadLetter(
                            topic=tp.topic,
                            partition=tp.partition,
                            offset=base + record.offset,
                            reason=checked.reason.value,
                            detail=checked.detail,
                            raw=raw,
                            raw_size=0 if value is None else len(value),
                        )
                    )
                else:
                    if self.redactor is not None:
                        redacted = self.redactor.redact(checked.text)
                        if redacted.found:
                            self._redacted.update(redacted.found)
                            checked.text = redacted.text
                            checked.content_hash = content_hash(redacted.text, checked.label)
                    samples.append(
                        NewSample(
                            topic=tp.topic,
                            partition=tp.partition,
                            offset=base + record.offset,
                            text=checked.text,
                            label=checked.label,
                            content_hash=checked.content_hash,
                            external_id=checked.external_id,
                            event_ts=checked.event_ts,
                            meta=checked.meta,
                        )
                    )
            high = consumer.highwater(tp) if consumer is not None else None
            positions.append(PartitionPosition(tp.topic, tp.partition, records[-1].offset + 1, high,
                                               topic_id=self._broker_topic_id(tp.topic), offset_base=base))
        return samples, letters, positions, count

    def _store(
        self,
        samples: list[NewSample],
        letters: list[NewDeadLetter],
        positions: list[PartitionPosition],
        stop: threading.Event | None,
    ) -> BatchResult | None:
        backoff = self.settings.retry_backoff_initial_s
        while True:
            try:
                with Session(self.engine) as session:
                    result = write_ingest_batch(
                        session,
                        samples=samples,
                        dead_letters=letters,
                        positions=positions,
                        policy=self._policy,
                        dedupe_content=self.settings.dedupe_content,
                        supersede=self.settings.relabeled_text == "supersede",
                    )
            except StoreUnavailable as exc:
                self.metrics.store_failures.inc()
                self.metrics.database_ok.set(0)
                self.health.database_ok = False
                self._note_error(str(exc))
                logger.error("storing batch of %d records failed, retrying in %.1fs: %s",
                             len(samples) + len(letters), backoff, exc)
                if stop is not None and stop.wait(backoff):
                    logger.warning("stopping with an unstored batch; it will be read again from the stored offsets")
                    return None
                if stop is None:
                    time.sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_backoff_max_s)
                continue
            if not self.health.database_ok:
                logger.info("database writable again")
            self.health.database_ok = True
            self.metrics.database_ok.set(1)
            return result

    def _after_store(
        self, result: BatchResult, positions: list[PartitionPosition], letters: list[NewDeadLetter]
    ) -> None:
        m = self.metrics
        for entity, n in self._redacted.items():
            m.pii_redacted.labels(entity=entity).inc(n)
        self._redacted.clear()
        m.records_stored.inc(result.stored)
        m.records_feedback.inc(result.feedback)
        m.records_superseded.inc(result.superseded)
        m.records_duplicate.labels(kind="position").inc(result.duplicate_position)
        m.records_duplicate.labels(kind="content").inc(result.duplicate_content)
        for reason, n in result.dead_letters.items():
            m.dead_letters.labels(reason=reason).inc(n)
        if result.stored or result.dead_letters:
            m.last_ingest_timestamp.set(time.time())
        m.samples_stored.labels(split="train").inc(result.stored - result.held_out)
        m.samples_stored.labels(split="held_out").inc(result.held_out)
        if result.new_labels:
            m.labels_stored.inc(len(result.new_labels))
            logger.info("new labels: %s", ", ".join(result.new_labels))
        for p in positions:
            if p.topic_id is not None:
                self._topic_ids[p.topic] = p.topic_id
            if p.high_watermark is not None:
                m.consumer_lag.labels(topic=p.topic, partition=str(p.partition)).set(max(0, p.high_watermark - p.next_offset))
        if result.dead_letters:
            logger.warning("dead letters: %s", dict(result.dead_letters))
        logger.debug(
            "batch stored=%d held_out=%d dup_position=%d dup_content=%d dead=%d",
            result.stored, result.held_out, result.duplicate_position, result.duplicate_content,
            sum(result.dead_letters.values()),
        )
        self._commit_to_kafka(positions)
        if letters and self.kafka.dead_letter_topic:
            self._forward_dead_letters(letters)

    # ------------------------------------------------------------------ positions

    def _assign_all_partitions(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        wanted: set[TopicPartition] = set()
        for topic in self.kafka.topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                logger.warning("topic %s has no partitions yet (does it exist?)", topic)
                continue
            wanted.update(TopicPartition(topic, p) for p in partitions)
        current = set(consumer.assignment())
        if wanted and wanted != current:
            consumer.assign(sorted(wanted))
            logger.info("assigned partitions: %s", _names(sorted(wanted)))
            self._seek_to_stored(sorted(wanted))
            self.health.assigned = _names(sorted(wanted))

    def _broker_topic_id(self, topic: str) -> str | None:
        """The broker's id for ``topic`` from the consumer's metadata; ``None`` if it names none.

        kafka-python 3 keeps topic ids in its cluster metadata but has no public accessor.
        """
        cluster = getattr(self._consumer, "_cluster", None)
        topic_id = cluster.topic_id(topic) if cluster is not None and hasattr(cluster, "topic_id") else None
        return None if topic_id is None or topic_id.int == 0 else str(topic_id)

    def _start_recreated_logs(self, polled: dict[TopicPartition, list[Any]]) -> bool:
        """A topic whose broker id changed is a new log: resume it at 0, past the old positions.

        Without this, a topic deleted and created again, or a memory-only broker restarted
        empty, would be read from the old log's offsets (skipping the new log's first
        records), and the records it did read would collide with the old log's stored
        positions and be dropped as replays. The polled batch is not stored: every polled
        partition is sought back to its stored offset, the recreated ones to 0.
        """
        recreated = []
        for topic in sorted({tp.topic for tp in polled}):
            known, current = self._topic_ids.get(topic), self._broker_topic_id(topic)
            if known is not None and current is not None and known != current:
                recreated.append((topic, known, current))
        if not recreated:
            return False
        for topic, known, current in recreated:
            with Session(self.engine) as session:
                bases = start_new_log(session, topic, current)
            self._topic_ids[topic] = current
            self.metrics.topic_recreated.labels(topic=topic).inc()
            logger.warning("topic %s was recreated (broker topic id %s, was %s): its stored offsets belong to a log "
                           "that no longer exists; reading the new log from offset 0 (records the old log held "
                           "and lifelong had not stored are gone with it; partitions %s)",
                           topic, current, known, sorted(bases))
        consumer = self._consumer
        self._seek_to_stored(sorted(set(polled) | set(consumer.assignment() if consumer is not None else ())))
        return True

    def _seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None or not partitions:
            return
        with Session(self.engine) as session:
            logs = load_logs(session, topics={tp.topic for tp in partitions})
        if not self.health.database_ok:
            self.health.database_ok = True
            self.metrics.database_ok.set(1)
        for (topic, partition), log in logs.items():
            self._offset_bases[(topic, partition)] = log.offset_base
            if log.topic_id is not None:
                self._topic_ids[topic] = log.topic_id
        for tp in partitions:
            log = logs.get((tp.topic, tp.partition))
            if log is not None:
                consumer.seek(tp, log.next_offset)
                logger.info("%s[%d]: resuming at stored offset %d", tp.topic, tp.partition, log.next_offset)
            elif self.kafka.auto_offset_reset == "earliest":
                # The database is the only record of what is stored: a partition it has never
                # seen starts at the beginning, whatever the group committed in Kafka (a
                # wiped or new database must not silently skip the topic's history).
                consumer.seek_to_beginning(tp)
                logger.info("%s[%d]: no stored offset, starting at the beginning", tp.topic, tp.partition)
            else:
                consumer.seek_to_end(tp)
                logger.info("%s[%d]: no stored offset, starting at the end", tp.topic, tp.partition)
        self.health.assigned = _names(list(consumer.assignment()))

    def _commit_to_kafka(self, positions: list[PartitionPosition]) -> None:
        consumer = self._consumer
        if consumer is None or not self.kafka.group_id:
            return
        offsets = {TopicPartition(p.topic, p.partition): OffsetAndMetadata(p.next_offset, "", -1) for p in positions}
        try:
            consumer.commit_async(offsets=offsets, callback=self._on_commit)
        except KafkaError as exc:
            # The database holds the truth; a failed Kafka commit only delays lag tooling.
            logger.warning("committing offsets to Kafka failed: %s", exc)

    @staticmethod
    def _on_commit(offsets: Any, response: Any) -> None:
        if isinstance(response, Exception):
            logger.warning("committing offsets to Kafka failed: %s", response)

    def _update_lag_from_consumer(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = consumer.position(tp, timeout_ms=100)
            except KafkaError:
                continue
            if position is not None:
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, high - position))

    # ------------------------------------------------------------------ side outputs

    def _forward_dead_letters(self, letters: list[NewDeadLetter]) -> None:
        topic = self.kafka.dead_letter_topic
        try:
            if self._dead_letter_producer is None:
                self._dead_letter_producer = KafkaProducer(
                    bootstrap_servers=self.kafka.bootstrap_servers,
                    client_id=f"{self.kafka.client_id}-dead-letters",
                    **self.kafka.client_security_options(),
                )
            for letter in letters:
                headers = [
                    ("lifelong.reason", letter.reason.encode()),
                    ("lifelong.detail", letter.detail.encode()[:1000]),
                    ("lifelong.source", f"{letter.topic}/{letter.partition}/{letter.offset}".encode()),
                ]
                self._dead_letter_producer.send(topic, value=letter.raw, headers=headers)
        except KafkaError as exc:
            # Dead letters are already stored; the topic copy is a convenience.
            logger.warning("forwarding %d dead letters to %s failed: %s", len(letters), topic, exc)

    # ------------------------------------------------------------------ health

    def _check_broker(self) -> None:
        if self._probe_tls is None and self.kafka.security_protocol.endswith("SSL"):
            try:
                self._probe_tls = _tls_context(self.kafka)
            except (OSError, ValueError) as exc:  # ssl.SSLError included: a missing or unreadable file
                message = f"kafka: cannot load the TLS files (kafka.ssl_cafile, ssl_certfile, ssl_keyfile): {exc}"
                if message != self.health.last_error:
                    self._note_error(message)
                self.health.broker_connected = False
                self.metrics.broker_connected.set(0)
                return
        connected = any(_broker_answers(server, tls=self._probe_tls) for server in self._broker_addresses())
        self._failed_probes = 0 if connected else self._failed_probes + 1
        if connected and not self.health.broker_connected:
            logger.info("broker reachable again")
        elif self._failed_probes == 1:
            # One unanswered probe is what a loaded host (training on every core) can
            # produce too: not ready at once, but an ERROR only once it persists.
            logger.warning("broker unreachable: %s (no answer within %.0fs)",
                           ",".join(self._broker_addresses()), _PROBE_TIMEOUT_S)
        elif self._failed_probes == _PROBES_BEFORE_ERROR:
            logger.error("broker unreachable: %s (%d probes in a row unanswered)",
                         ",".join(self._broker_addresses()), self._failed_probes)
        self.health.broker_connected = connected
        self.metrics.broker_connected.set(int(connected))

    def _broker_addresses(self) -> list[str]:
        addresses = list(self.kafka.bootstrap_servers or [])
        consumer = self._consumer
        if consumer is not None:
            try:
                cluster = consumer._client.cluster  # noqa: SLF001 - kafka-python exposes no public broker list
                addresses += [f"{b.host}:{b.port}" for b in cluster.brokers()]
            except AttributeError:
                pass
        return sorted(set(addresses))

    def _note_error(self, message: str) -> None:
        self.health.last_error = message
        logger.warning("%s", message)

    def _refresh_sample_gauges(self) -> None:
        try:
            with Session(self.engine) as session:
                counts = split_counts(session)
        except StoreUnavailable as exc:
            self._note_error(str(exc))
            return
        self.metrics.samples_stored.labels(split="train").set(counts.train)
        self.metrics.samples_stored.labels(split="held_out").set(counts.held_out)
        self.metrics.labels_stored.set(counts.labels)


#: An ApiVersions v0 request (api key 18), correlation id 0x6c6c ("ll"), client id "lifelong-health".
_API_VERSIONS_PROBE = (lambda client: struct.pack(">ihhih", 2 + 2 + 4 + 2 + len(client), 18, 0, 0x6C6C, len(client))
                       + client)(b"lifelong-health")


def _tls_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The TLS the consumer speaks, for the health probe: a plaintext probe of a TLS listener never
    gets an answer, and would hold an SSL deployment not ready forever."""
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile is not None:
        password = kafka.ssl_password.get_secret_value() if kafka.ssl_password is not None else None
        context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
                                password)
    return context


def _broker_answers(address: str, timeout_s: float = _PROBE_TIMEOUT_S, *, tls: ssl.SSLContext | None = None) -> bool:
    """Whether a Kafka broker at ``address`` answers a request, not merely accepts a connection.

    A broker that is frozen (SIGSTOP, a GC pause, a hung disk) or wedged still has its
    listening socket: the kernel completes the TCP handshake for it. Only an answer to
    a real request (ApiVersions, which every Kafka version serves before authentication)
    tells that it is serving.
    """
    host, _, port = address.rpartition(":")
    header = b""
    try:
        sock = socket.create_connection((host or "localhost", int(port)), timeout=timeout_s)
        try:
            if tls is not None:  # the handshake; the TLS socket takes over the descriptor
                sock = tls.wrap_socket(sock, server_hostname=host or "localhost")
            sock.settimeout(timeout_s)
            sock.sendall(_API_VERSIONS_PROBE)
            while len(header) < 8:
                chunk = sock.recv(8 - len(header))
                if not chunk:
                    return False
                header += chunk
        finally:
            sock.close()
    except (OSError, ValueError):
        return False
    return struct.unpack(">i", header[4:8])[0] == 0x6C6C
