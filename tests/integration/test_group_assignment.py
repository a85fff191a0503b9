"""Group mode: partitions come from the consumer group, positions from the database."""

from __future__ import annotations

from pathlib import Path

from daemon.ingest.broker import EmbeddedBroker
from tests.conftest import produce, record, running_ingestor, settings_for


class TestGroupAssignment:
    def test_assignment_seeks_to_stored_offsets(
        self, broker: EmbeddedBroker, make_topic, sqlite_url: str, tmp_path: Path
    ) -> None:
        topic = make_topic(partitions=2)
        sent = produce(broker.bootstrap_servers, topic, [record(f"first {i}", "a") for i in range(30)])
        with running_ingestor(settings_for(broker, topic, sqlite_url, tmp_path)) as running:
            running.wait_stored(sent)
        sent += produce(broker.bootstrap_servers, topic, [record(f"second {i}", "b") for i in range(12)])

        # A brand-new group: Kafka has no commits for it, so only the stored offsets prevent a re-read.
        settings = settings_for(
            broker, topic, sqlite_url, tmp_path, kafka={"assignment": "group", "group_id": "fresh-group"}
        )
        with running_ingestor(settings) as running:
            # tansu takes ~23 s to complete a group join.
            running.wait_stored(sent, timeout_s=90)
            assert sorted(running.ingestor.health.assigned) == [f"{topic}[0]", f"{topic}[1]"]

        assert running.value("lifelong_ingest_records_consumed_total") == 12
        assert running.value("lifelong_ingest_records_stored_total") == 12
        assert running.value("lifelong_ingest_records_duplicate_total", {"kind": "position"}) == 0
