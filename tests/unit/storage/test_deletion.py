"""Forget requests and retention over a real database: exactly what was asked goes, counts stay right."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlmodel import Session

from storage.deletion import ForgetCriteria, UnknownIds, expire_batch, forget, missing_sample_ids
from storage.engine import make_engine, upgrade
from storage.models import DataDeletion, DeadLetter, Label, ModelVersion, PredictionRecord, Sample

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    engine = make_engine(database_url)
    upgrade(engine)
    with Session(engine) as s:
        labels = {name: Label(name=name) for name in ("a", "b")}
        s.add_all(labels.values())
        s.commit()
        # 10 samples, a day apart: ids 1..10, ingested NOW-10d .. NOW-1d; every third held out.
        for i in range(1, 11):
            label = labels["a" if i % 2 else "b"]
            held = i % 3 == 0
            s.add(Sample(text=f"text {i}", label_id=label.id, topic="t", partition=0, offset=i,
                         content_hash=f"{i:064d}", held_out=held, external_id=f"id-{i}",
                         meta={"region": "eu" if i <= 5 else "us"}, ingested_at=NOW - timedelta(days=11 - i)))
            label.sample_count += 1
            label.heldout_count += int(held)
        s.add(PredictionRecord(request_id="id-2", version="v1", label="b", confidence=0.9, text_hash="h",
                               text="text 2"))
        s.add(PredictionRecord(request_id="only-answer", version="v1", label="a", confidence=0.9, text_hash="h"))
        s.add(ModelVersion(name="v1", strategy="slda", data_watermark=4, buffer_members=[1, 2, 4],
                           artifact_path="x", checksum="c"))
        s.add(ModelVersion(name="v2", parent="v1", strategy="slda", data_watermark=10, buffer_members=[1, 2, 4, 8],
                           artifact_path="x", checksum="c"))
        for i in range(3):
            s.add(DeadLetter(topic="t", partition=0, offset=100 + i, reason="not_json", detail="x",
                             created_at=NOW - timedelta(days=10 - 4 * i)))
        s.commit()
        yield s
    engine.dispose()


def _ids(session: Session) -> list[int]:
    return list(session.execute(select(Sample.id).order_by(Sample.id)).scalars())


def _counts(session: Session) -> dict[str, tuple[int, int]]:
    session.expire_all()
    return {label.name: (label.sample_count, label.heldout_count) for label in session.exec(select(Label)).scalars()}


def test_forget_by_id_removes_the_sample_its_answers_and_its_buffer_places(session: Session) -> None:
    report = forget(session, ForgetCriteria(ids=("id-2", "only-answer")), actor="dpo", reason="ticket 7")
    assert (report.samples, report.heldout_samples, report.predictions) == (1, 0, 2)
    assert _ids(session) == [1, 3, 4, 5, 6, 7, 8, 9, 10]
    assert session.execute(select(PredictionRecord)).first() is None
    session.expire_all()
    v1, v2 = session.get(ModelVersion, "v1"), session.get(ModelVersion, "v2")
    assert (v1.buffer_members, v2.buffer_members) == ([1, 4], [1, 4, 8])
    # Both learned sample 2 (it is at or below both watermarks, and a training sample).
    assert (v1.forgotten_samples, v2.forgotten_samples) == (1, 1)
    assert report.versions_affected == ["v1", "v2"]
    assert _counts(session) == {"a": (5, 2), "b": (4, 1)}
    entry = session.execute(select(DataDeletion)).scalar_one()
    assert (entry.cause, entry.actor, entry.reason, entry.criteria) == ("forget", "dpo", "ticket 7",
                                                                        {"ids": ["id-2", "only-answer"]})


def test_a_forgotten_held_out_sample_marks_no_version(session: Session) -> None:
    report = forget(session, ForgetCriteria(ids=("id-3",)), actor="dpo", reason=None)
    assert (report.samples, report.heldout_samples, report.versions_affected) == (1, 1, [])
    session.expire_all()
    assert session.get(ModelVersion, "v2").forgotten_samples == 0


def test_only_versions_whose_watermark_covers_a_sample_learned_it(session: Session) -> None:
    report = forget(session, ForgetCriteria(ids=("id-8",)), actor="dpo", reason=None)
    assert report.versions_affected == ["v2"]
    session.expire_all()
    assert (session.get(ModelVersion, "v1").forgotten_samples, session.get(ModelVersion, "v2").forgotten_samples) \
        == (0, 1)


def test_an_unknown_id_deletes_nothing_and_names_the_id(session: Session) -> None:
    with pytest.raises(UnknownIds, match="'nope'"):
        forget(session, ForgetCriteria(ids=("id-1", "nope")), actor="dpo", reason=None)
    assert len(_ids(session)) == 10
    assert session.execute(select(DataDeletion)).first() is None


def test_criteria_together_must_all_match(session: Session) -> None:
    report = forget(session, ForgetCriteria(before=NOW - timedelta(days=4), meta=(("region", "us"),)),
                    actor="dpo", reason=None)
    # ingested before NOW-4d: ids 1..6; region us: ids 6..10 -> only 6.
    assert report.samples == 1
    assert _ids(session) == [1, 2, 3, 4, 5, 7, 8, 9, 10]


def test_forget_by_meta(session: Session) -> None:
    assert forget(session, ForgetCriteria(meta=(("region", "eu"),)), actor="dpo", reason=None).samples == 5
    assert _ids(session) == [6, 7, 8, 9, 10]
    assert forget(session, ForgetCriteria(meta=(("region", "mars"),)), actor="dpo", reason=None).samples == 0


def test_a_request_must_name_something() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ForgetCriteria()
    with pytest.raises(ValueError, match="timezone"):
        ForgetCriteria(before=datetime(2026, 1, 1))


def test_retention_deletes_exactly_what_is_older_in_batches(session: Session) -> None:
    cutoff = NOW - timedelta(days=5)  # samples 1..5 and the first two dead letters are older
    first = expire_batch(session, older_than=cutoff, batch=3)
    assert (first.samples, first.dead_letters) == (3, 2)
    second = expire_batch(session, older_than=cutoff, batch=3)
    assert (second.samples, second.dead_letters) == (2, 0)
    third = expire_batch(session, older_than=cutoff, batch=3)
    assert (third.samples, third.dead_letters) == (0, 0)
    assert _ids(session) == [6, 7, 8, 9, 10]
    assert len(session.execute(select(DeadLetter.id)).all()) == 1
    assert _counts(session) == {"a": (2, 1), "b": (3, 1)}  # left: a 7, 9 (9 held out); b 6, 8, 10 (6)
    session.expire_all()
    # Retention is not a request to forget: no version is marked, but buffers lose the samples.
    v2 = session.get(ModelVersion, "v2")
    assert (v2.forgotten_samples, v2.buffer_members) == (0, [8])
    assert [e.cause for e in session.execute(select(DataDeletion)).scalars()] == ["retention", "retention"]


def test_missing_sample_ids(session: Session) -> None:
    forget(session, ForgetCriteria(ids=("id-4",)), actor="dpo", reason=None)
    assert missing_sample_ids(session, [1, 4, 99]) == {4, 99}
