"""A known mix of valid, duplicate and bad records lands exactly as the contract says."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from daemon.ingest.broker import EmbeddedBroker
from daemon.ingest.records import Limits, Reason, Rejection, ValidRecord, validate
from storage.models import DeadLetter, Label, Sample
from tests.conftest import produce, record, running_ingestor, settings_for
from tests.reliability_log import record_case

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


def _fuzzed_values(seed: int, count: int) -> list[bytes | None]:
    """Random bytes, random JSON of every shape, escapes no serializer writes, and valid records, mixed."""
    rng = random.Random(seed)
    nasty = ['"\\ud800"', '"a\\udfffb"', '"\\u0000"', "NaN", "-Infinity", "1e999", '"\\ud83d\\ude00 ok"', '" "',
             "[]", "{}", "null", "true", '"' + "w" * 600 + '"']

    def scalar() -> str:
        return rng.choice([*nasty, json.dumps(rng.random()), json.dumps(f"fuzz {rng.getrandbits(40)}"),
                           str(rng.randint(-10**30, 10**30))])

    values: list[bytes | None] = []
    for i in range(count):
        kind = rng.randrange(6)
        if kind == 0:
            values.append(rng.randbytes(rng.randrange(0, 120)))
        elif kind == 1:
            fields = {k: scalar() for k in rng.sample(["text", "label", "id", "ts", "meta"], rng.randrange(0, 6))}
            values.append(("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode())
        elif kind == 2:
            values.append(f'{{"text": {scalar()}, "label": {scalar()}, "meta": {{"k": {scalar()}}}}}'.encode())
        elif kind == 3:
            values.append(None if rng.random() < 0.2 else b"{" * rng.randrange(1, 5000))
        else:
            values.append(record(f"fuzz-valid {seed}-{i} {rng.getrandbits(32)}", f"l{rng.randrange(4)}", id=f"f{i}"))
    return values


class TestFuzzedRecords:
    def test_every_fuzzed_record_is_stored_once_or_dead_lettered(
        self, broker: EmbeddedBroker, make_topic, database_url: str, tmp_path: Path
    ) -> None:
        topic = make_topic(partitions=2)
        values = _fuzzed_values(seed=11, count=600)
        limits = Limits(max_text_chars=MAX_TEXT)
        outcomes = [validate(value, limits) for value in values]
        valid = {(o.text, o.label) for o in outcomes if isinstance(o, ValidRecord)}
        rejected = sorted(o.reason.value for o in outcomes if isinstance(o, Rejection))
        assert len(valid) > 150 and len(rejected) > 200 and len(set(rejected)) >= 8  # the mix is really mixed
        sent = produce(broker.bootstrap_servers, topic, values)

        settings = settings_for(broker, topic, database_url, tmp_path, ingest={"max_text_chars": MAX_TEXT})
        with running_ingestor(settings) as running:
            running.wait_stored(sent)
            assert running.thread.is_alive()  # nothing escaped the consumer loop

        with Session(running.engine) as session:
            stored = session.execute(select(Sample.text, Label.name).join(Label)).all()
            letters = sorted(session.execute(select(DeadLetter.reason)).scalars())
        assert sorted(stored) == sorted(valid) and len(stored) == len(valid)
        assert letters == rejected
        assert Reason.UNPROCESSABLE.value not in letters
        duplicates = int(running.value("lifelong_ingest_records_duplicate_total", {"kind": "content"}))
        assert running.value("lifelong_ingest_records_consumed_total") == sent == len(valid) + len(letters) + duplicates
        record_case(f"fuzzed records ({database_url.split(':')[0].split('+')[0]})",
                    inflicted="600 values through the broker: random bytes, random JSON, lone surrogates, NaN, "
                              "NUL, deep nesting, tombstones, valid records",
                    checked="each stored once or dead-lettered with a reason; consumer thread alive; no "
                            "'unprocessable'", produced=sent, stored=len(stored), dead_lettered=len(letters),
                    duplicates=duplicates, lost=sent - len(stored) - len(letters) - duplicates,
                    reasons=len(set(letters)))
