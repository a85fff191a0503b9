"""An unexpected failure inside an ingest step (a bug, not an outage) must not kill ingestion.

The fault is injected into a real kafka-python consumer talking to the real broker
(there is no way to make a real broker raise a non-Kafka exception in the client);
everything else — the ingest loop, SQLite, the reconnect from stored offsets — is real.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from daemon.ingest.broker import EmbeddedBroker
from daemon.ingest.consumer import Ingestor, _make_consumer
from daemon.metrics import Metrics
from storage.engine import make_engine
from storage.models import Sample
from tests.conftest import produce, record, settings_for, wait_for


def test_an_unexpected_error_reconnects_from_stored_offsets_and_loses_nothing(
    broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path
) -> None:
    total = 3000
    produce(broker.bootstrap_servers, topic, [record(f"text {i}", f"l{i % 3}", id=f"r{i}") for i in range(total)])
    polls = [0]
    metrics = Metrics()
    failing_seen_after_fault: list[float | None] = []

    def faulty_consumer(**options: Any):
        consumer = _make_consumer(**options)
        real_poll = consumer.poll

        def poll(*args: Any, **kwargs: Any):
            polls[0] += 1
            if polls[0] == 3:
                raise RuntimeError("injected fault")
            if polls[0] == 4:  # the first poll of the reconnected consumer
                failing_seen_after_fault.append(metrics.registry.get_sample_value("lifelong_ingest_failing"))
            return real_poll(*args, **kwargs)

        consumer.poll = poll
        return consumer

    settings = settings_for(broker, topic, sqlite_url, tmp_path, kafka={"max_poll_records": 500})
    engine = make_engine(sqlite_url)
    ingestor = Ingestor(kafka=settings.kafka, ingest=settings.ingest, engine=engine, metrics=metrics,
                        consumer_factory=faulty_consumer)
    stop = threading.Event()
    thread = threading.Thread(target=ingestor.run, args=(stop,), daemon=True)
    thread.start()

    def stored() -> int:
        with Session(engine) as session:
            return int(session.execute(select(func.count()).select_from(Sample)).scalar_one())

    try:
        wait_for(lambda: stored() == total, timeout_s=60, what="every record stored after the fault")
        assert thread.is_alive(), "the ingest thread died"
        assert ingestor.health.last_error == "unexpected: RuntimeError: injected fault"
        assert not ingestor.health.failing and ingestor.health.ready
    finally:
        stop.set()
        thread.join(timeout=30)
        engine.dispose()
    assert polls[0] > 3
    assert failing_seen_after_fault == [1.0], "the failure was not visible as lifelong_ingest_failing"
    assert metrics.registry.get_sample_value("lifelong_ingest_failing") == 0
    assert metrics.registry.get_sample_value("lifelong_ingest_records_stored_total") == total
    assert metrics.registry.get_sample_value("lifelong_ingest_records_duplicate_total", {"kind": "position"}) == 0
