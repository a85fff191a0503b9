"""Crashes and restarts lose nothing and store nothing twice."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import func, select
from sqlmodel import Session

from daemon.ingest.broker import EmbeddedBroker, free_port
from storage.engine import make_engine
from storage.ingest_store import load_offsets
from storage.models import Sample
from tests.conftest import (
    produce,
    record,
    running_ingestor,
    settings_for,
    start_lifelong_run,
    wait_for,
)
from tests.reliability_log import record_case


def _sample_stats(url: str) -> tuple[int, int, set[str]]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            total = session.execute(select(func.count()).select_from(Sample)).scalar_one()
            positions = session.execute(
                select(func.count()).select_from(
                    select(Sample.topic, Sample.partition, Sample.offset).distinct().subquery()
                )
            ).scalar_one()
            ids = set(session.execute(select(Sample.external_id)).scalars())
    finally:
        engine.dispose()
    return total, positions, ids


def _stored_positions(url: str) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return sum(load_offsets(session).values())
    finally:
        engine.dispose()


def _daemon_process(broker: EmbeddedBroker, topic: str, url: str, tmp_path: Path, port: int) -> subprocess.Popen:
    # Small batches so the signal lands mid-stream; identical texts need content dedupe off.
    return start_lifelong_run(broker, topic, url, tmp_path, port, LIFELONG_KAFKA__MAX_POLL_RECORDS="100",
                              LIFELONG_INGEST__DEDUPE_CONTENT="false")


class TestSigkill:
    def test_run_killed_mid_stream_then_restarted_stores_every_record_once(
        self, broker: EmbeddedBroker, make_topic, sqlite_url: str, tmp_path: Path
    ) -> None:
        topic = make_topic(partitions=3)
        total = 6000
        # Identical texts on purpose: with content dedupe off, only position keys prevent double storage.
        produce(broker.bootstrap_servers, topic, [record("same text", "l", id=f"r{i}") for i in range(total)])

        port = free_port()
        first = _daemon_process(broker, topic, sqlite_url, tmp_path, port)
        try:
            wait_for(lambda: _stored_positions(sqlite_url) >= 500, timeout_s=60, what="first records stored")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            first.kill()
        stored_at_kill = _stored_positions(sqlite_url)
        assert 0 < stored_at_kill < total, "the kill must land mid-stream for this test to mean anything"

        second = _daemon_process(broker, topic, sqlite_url, tmp_path, port)
        try:
            wait_for(lambda: _stored_positions(sqlite_url) >= total, timeout_s=120, what="all records stored")
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
        finally:
            second.kill()

        count, positions, ids = _sample_stats(sqlite_url)
        assert count == positions == total
        assert ids == {f"r{i}" for i in range(total)}
        # The restart resumed exactly at the stored offsets: it re-read nothing already stored.
        assert 'lifelong_ingest_records_duplicate_total{kind="position"} 0.0' in metrics
        assert f"lifelong_ingest_records_consumed_total {float(total - stored_at_kill)}" in metrics
        record_case("SIGKILL during ingestion", inflicted=f"kill -9 of `lifelong run` after {stored_at_kill} of "
                    f"{total} records (3 partitions, identical texts, content dedupe off), then a restart",
                    checked="every id stored exactly once; the restart re-read nothing already stored",
                    produced=total, stored=count, dead_lettered=0, lost=total - count, stored_at_kill=stored_at_kill,
                    re_read=0)


class TestSigterm:
    def test_sigterm_mid_stream_stores_the_batch_in_hand_exits_zero_and_loses_nothing(
        self, broker: EmbeddedBroker, make_topic, sqlite_url: str, tmp_path: Path
    ) -> None:
        topic = make_topic(partitions=2)
        total = 6000
        produce(broker.bootstrap_servers, topic, [record("same text", "l", id=f"t{i}") for i in range(total)])
        port = free_port()
        first = _daemon_process(broker, topic, sqlite_url, tmp_path, port)
        try:
            wait_for(lambda: _stored_positions(sqlite_url) >= 300, timeout_s=60, what="first records stored")
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=60) == 0
        finally:
            first.kill()
        count, positions, _ = _sample_stats(sqlite_url)
        assert count == positions, "every stored offset has its sample, and no sample lacks its offset"
        assert 0 < count < total, "the signal must land mid-stream for this test to mean anything"

        second = _daemon_process(broker, topic, sqlite_url, tmp_path, port)
        try:
            wait_for(lambda: _stored_positions(sqlite_url) >= total, timeout_s=120, what="all records stored")
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0
        finally:
            second.kill()
        count, positions, ids = _sample_stats(sqlite_url)
        assert count == positions == total
        assert ids == {f"t{i}" for i in range(total)}


class TestResumeFromStoredOffsets:
    def _ingest(self, broker: EmbeddedBroker, topic: str, url: str, tmp_path: Path, group: str, expect: int):
        settings = settings_for(broker, topic, url, tmp_path, kafka={"group_id": group})
        with running_ingestor(settings) as running:
            running.wait_stored(expect)
        return running

    def test_restart_ignores_missing_kafka_commits(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path
    ) -> None:
        produce(broker.bootstrap_servers, topic, [record(f"first {i}", "a") for i in range(50)])
        self._ingest(broker, topic, sqlite_url, tmp_path, "group-one", 50)
        produce(broker.bootstrap_servers, topic, [record(f"second {i}", "a") for i in range(20)])

        # A group that never committed anything: Kafka would start from the beginning.
        running = self._ingest(broker, topic, sqlite_url, tmp_path, "group-never-committed", 70)

        assert running.value("lifelong_ingest_records_consumed_total") == 20
        assert running.value("lifelong_ingest_records_duplicate_total", {"kind": "position"}) == 0
        assert _sample_stats(sqlite_url)[0] == 70

    def test_restart_ignores_kafka_commits_that_are_behind(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path
    ) -> None:
        produce(broker.bootstrap_servers, topic, [record(f"first {i}", "a") for i in range(40)])
        self._ingest(broker, topic, sqlite_url, tmp_path, "group-behind", 40)

        # Rewind the group's committed offset in Kafka to 5.
        rewinder = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id="group-behind",
                                 enable_auto_commit=False)
        tp = TopicPartition(topic, 0)
        rewinder.assign([tp])
        rewinder.commit({tp: OffsetAndMetadata(5, "", -1)})
        assert rewinder.committed(tp) == 5
        rewinder.close(autocommit=False)

        produce(broker.bootstrap_servers, topic, [record(f"second {i}", "a") for i in range(10)])
        running = self._ingest(broker, topic, sqlite_url, tmp_path, "group-behind", 50)

        assert running.value("lifelong_ingest_records_consumed_total") == 10
        assert running.value("lifelong_ingest_records_duplicate_total", {"kind": "position"}) == 0
        assert _sample_stats(sqlite_url)[0] == 50

    def test_stored_position_is_committed_to_kafka_for_lag_tooling(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path
    ) -> None:
        produce(broker.bootstrap_servers, topic, [record(f"text {i}", "a") for i in range(30)])
        self._ingest(broker, topic, sqlite_url, tmp_path, "group-committed", 30)
        checker = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id="group-committed",
                                enable_auto_commit=False)
        try:
            wait_for(lambda: checker.committed(TopicPartition(topic, 0)) == 30, timeout_s=10, what="Kafka commit")
        finally:
            checker.close(autocommit=False)
