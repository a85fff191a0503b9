"""Every Prometheus metric lifelong exports, defined once.

Metrics hang off a :class:`Metrics` object built against a ``CollectorRegistry`` so
that each test (and each embedded daemon in one process) gets its own registry and
can read values with ``registry.get_sample_value(...)``. Labelled counters are
created for every known label value at start so that they export 0, not nothing,
before the first event — rate() and absent() alerts depend on that.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from daemon.records import Reason

__all__ = ["DUPLICATE_KINDS", "Metrics"]

#: Why a record was skipped as already stored.
DUPLICATE_KINDS = ("position", "content")


class Metrics:
    """The daemon's metrics, registered on ``registry`` (a fresh one when omitted)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)

        self.records_consumed = Counter(
            "lifelong_ingest_records_consumed", "Records read from Kafka, valid or not.", registry=r
        )
        self.records_stored = Counter(
            "lifelong_ingest_records_stored", "Valid records stored as new samples.", registry=r
        )
        self.records_duplicate = Counter(
            "lifelong_ingest_records_duplicate",
            "Records skipped because they were already stored, by kind (position: same topic/partition/offset; "
            "content: same text and label).",
            ["kind"],
            registry=r,
        )
        self.dead_letters = Counter(
            "lifelong_ingest_dead_letters", "Records stored as dead letters, by reason code.", ["reason"], registry=r
        )
        self.store_failures = Counter(
            "lifelong_ingest_store_failures",
            "Ingest batches the database refused (locked, unwritable, gone); each is retried.",
            registry=r,
        )
        self.batch_duration = Histogram(
            "lifelong_ingest_batch_duration_seconds",
            "Time to validate and store one ingest batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "lifelong_ingest_consumer_lag_records",
            "Records in the partition not yet stored (fetch high-watermark minus stored position).",
            ["topic", "partition"],
            registry=r,
        )
        self.last_ingest_timestamp = Gauge(
            "lifelong_ingest_last_timestamp_seconds",
            "Unix time of the last batch that stored at least one record or dead letter.",
            registry=r,
        )
        self.broker_connected = Gauge(
            "lifelong_ingest_broker_connected", "1 while the consumer is connected to the broker, else 0.", registry=r
        )
        self.samples_stored = Gauge(
            "lifelong_samples_stored", "Samples in the database, by split (train, held_out).", ["split"], registry=r
        )
        self.labels_stored = Gauge("lifelong_labels_stored", "Distinct labels in the database.", registry=r)

        for kind in DUPLICATE_KINDS:
            self.records_duplicate.labels(kind=kind)
        for reason in Reason:
            self.dead_letters.labels(reason=reason.value)
        for split in ("train", "held_out"):
            self.samples_stored.labels(split=split)
