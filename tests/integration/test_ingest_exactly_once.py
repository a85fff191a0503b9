"""A known mix of valid, duplicate and bad records lands exactly as the contract says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from daemon.broker import EmbeddedBroker
from daemon.records import Reason
from storage.models import DeadLetter, Label, Sample
from tests.conftest import produce, record, running_ingestor, settings_for

VALID = 120
CONTENT_DUPLICATES = 15
MAX_TEXT = 500

#: One bad record per reason code, with the reason it must get.
BAD_RECORDS: list[tuple[bytes | None, Reason]] = [
    (None, Reason.NULL_VALUE),
    (b"x" * (5 * 1024 * 1024), Reason.TOO_LARGE),
    (b'{"text": "caf\xe9", "label": "l0"}', Reason.INVALID_UTF8),
    (b"this is not json", Reason.NOT_JSON),
    (b'{"text": "unterminated", "label": ', Reason.NOT_JSON),
    (b'["text", "label"]', Reason.NOT_OBJECT),
    (b'"just a string"', Reason.NOT_OBJECT),
    (b'{"label": "l0"}', Reason.MISSING_TEXT),
    (b'{"text": "no label here"}', Reason.MISSING_LABEL),
    (b'{"text": "   ", "label": "l0"}', Reason.EMPTY_TEXT),
    (b'{"text": "empty label", "label": ""}', Reason.EMPTY_LABEL),
    (b'{"text": 17, "label": "l0"}', Reason.WRONG_TYPE),
    (b'{"text": "list label", "label": ["a"]}', Reason.WRONG_TYPE),
    (b'{"text": "meta list", "label": "l0", "meta": [1]}', Reason.WRONG_TYPE),
    (json.dumps({"text": "y" * (MAX_TEXT + 1), "label": "l0"}).encode(), Reason.TEXT_TOO_LONG),
    (json.dumps({"text": "long label", "label": "z" * 300}).encode(), Reason.LABEL_TOO_LONG),
    (json.dumps({"text": "long id", "label": "l0", "id": "i" * 300}).encode(), Reason.ID_TOO_LONG),
    (b'{"text": "nul \\u0000 inside", "label": "l0"}', Reason.NULL_BYTES),
    (b'{"text": "bad time", "label": "l0", "ts": "last tuesday"}', Reason.INVALID_TS),
]


def test_every_reason_code_is_exercised() -> None:
    # UNPROCESSABLE is the safety net for cases validation does not foresee, so no known
    # record produces it; tests/unit/daemon/test_records.py::TestNeverRaises covers it.
    assert {reason for _, reason in BAD_RECORDS} == set(Reason) - {Reason.UNPROCESSABLE}


class TestKnownMix:
    def test_store_holds_exactly_the_valid_unique_records(
        self, broker: EmbeddedBroker, make_topic, database_url: str, tmp_path: Path
    ) -> None:
        topic = make_topic(partitions=3)
        valid = [record(f"utterance number {i}", f"l{i % 6}", id=f"r{i}") for i in range(VALID)]
        # Same text and label as earlier records, different ids and offsets: content duplicates.
        resent = [record(f"utterance number {i}", f"l{i % 6}", id=f"again{i}") for i in range(CONTENT_DUPLICATES)]
        values: list[bytes | None] = []
        bad_iter = iter(BAD_RECORDS)
        for i, value in enumerate(valid + resent):
            values.append(value)
            if i % 7 == 3:
                bad = next(bad_iter, None)
                if bad is not None:
                    values.append(bad[0])
        values.extend(bad for bad, _ in bad_iter)
        sent = produce(broker.bootstrap_servers, topic, values)

        settings = settings_for(broker, topic, database_url, tmp_path, ingest={"max_text_chars": MAX_TEXT})
        with running_ingestor(settings) as running:
            running.wait_stored(sent)

        with Session(running.engine) as session:
            rows = session.execute(select(Sample.text, Label.name, Sample.external_id).join(Label)).all()
            letters = session.execute(select(DeadLetter)).scalars().all()

        assert sorted((t, label) for t, label, _ in rows) == sorted(
            (f"utterance number {i}", f"l{i % 6}") for i in range(VALID)
        )
        # Across partitions there is no order, so either copy of a re-sent record may be kept: exactly one is.
        ids = {ext for _, _, ext in rows}
        assert len(ids) == VALID
        assert all((f"r{i}" in ids) != (f"again{i}" in ids) for i in range(CONTENT_DUPLICATES))
        assert {f"r{i}" for i in range(CONTENT_DUPLICATES, VALID)} <= ids
        assert sorted(letter.reason for letter in letters) == sorted(reason.value for _, reason in BAD_RECORDS)

        by_reason = {letter.reason: letter for letter in letters}
        huge = by_reason[Reason.TOO_LARGE.value]
        assert huge.raw_size == 5 * 1024 * 1024
        assert huge.raw == b"x" * settings.ingest.dead_letter_raw_bytes
        assert by_reason[Reason.NOT_JSON.value].detail.startswith("value is not JSON")
        assert by_reason[Reason.NULL_VALUE.value].raw is None
        assert by_reason[Reason.INVALID_UTF8.value].raw == b'{"text": "caf\xe9", "label": "l0"}'

        value = running.value
        assert value("lifelong_ingest_records_consumed_total") == sent
        assert value("lifelong_ingest_records_stored_total") == VALID
        assert value("lifelong_ingest_records_duplicate_total", {"kind": "content"}) == CONTENT_DUPLICATES
        assert value("lifelong_ingest_records_duplicate_total", {"kind": "position"}) == 0
        for reason in Reason:
            expected = sum(1 for _, r in BAD_RECORDS if r is reason)
            assert value("lifelong_ingest_dead_letters_total", {"reason": reason.value}) == expected, reason
        assert value("lifelong_labels_stored") == 6
        assert value("lifelong_samples_stored", {"split": "train"}) + value(
            "lifelong_samples_stored", {"split": "held_out"}
        ) == VALID


class TestContentDedupeOff:
    def test_resent_records_are_stored_again_when_dedupe_is_off(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path
    ) -> None:
        values = [record("same words", "greeting")] * 3
        sent = produce(broker.bootstrap_servers, topic, values)
        settings = settings_for(broker, topic, sqlite_url, tmp_path, ingest={"dedupe_content": False})
        with running_ingestor(settings) as running:
            running.wait_stored(sent)
        assert running.value("lifelong_ingest_records_stored_total") == 3
        assert running.value("lifelong_ingest_records_duplicate_total", {"kind": "content"}) == 0


class TestDeadLetterTopic:
    def test_bad_records_are_also_forwarded_with_their_reason(
        self, broker: EmbeddedBroker, make_topic, sqlite_url: str, tmp_path: Path
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition

        source, dead_topic = make_topic(), make_topic()
        sent = produce(broker.bootstrap_servers, source, [b"nope", record("fine", "ok"), b"[]"])
        settings = settings_for(broker, source, sqlite_url, tmp_path, kafka={"dead_letter_topic": dead_topic})
        with running_ingestor(settings) as running:
            running.wait_stored(sent)
            consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False)
            tp = TopicPartition(dead_topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            got: list = []
            for _ in range(40):
                got += consumer.poll(timeout_ms=250).get(tp, [])
                if len(got) >= 2:
                    break
            consumer.close()
        assert [m.value for m in got] == [b"nope", b"[]"]
        assert [dict(m.headers)["lifelong.reason"] for m in got] == [b"not_json", b"not_object"]


@pytest.mark.parametrize("partitions", [1, 4])
def test_offsets_stored_per_partition_match_the_log(
    broker: EmbeddedBroker, make_topic, sqlite_url: str, tmp_path: Path, partitions: int
) -> None:
    topic = make_topic(partitions=partitions)
    per_partition = 25
    for p in range(partitions):
        produce(broker.bootstrap_servers, topic, [record(f"p{p} n{i}", "x") for i in range(per_partition)], partition=p)
    settings = settings_for(broker, topic, sqlite_url, tmp_path)
    with running_ingestor(settings) as running:
        running.wait_stored(per_partition * partitions)
    from storage.ingest_store import load_offsets

    with Session(running.engine) as session:
        offsets = load_offsets(session, topics=[topic])
    assert offsets == {(topic, p): per_partition for p in range(partitions)}
