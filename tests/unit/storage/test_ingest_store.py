"""The ingest transaction stores every field as SQLAlchemy would, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert, select
from sqlmodel import Session

from storage.engine import make_engine, upgrade
from storage.ingest_store import NewSample, PartitionPosition, write_ingest_batch
from storage.models import Label, Sample
from storage.split import HeldOutPolicy

EVENT = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)


def _samples() -> list[NewSample]:
    return [
        NewSample(topic="t", partition=0, offset=0, text="with everything", label="a", content_hash="h0",
                  external_id="id-0", event_ts=EVENT, meta={"source": "web", "n": [1, 2], "ok": True}),
        NewSample(topic="t", partition=0, offset=1, text="bare", label="b", content_hash="h1"),
        NewSample(topic="t", partition=0, offset=2, text="ünïcödé ☃ text", label="a", content_hash="h2",
                  meta={}),
    ]


def _write(url: str) -> list[tuple]:
    engine = make_engine(url)
    with Session(engine) as session:
        result = write_ingest_batch(session, samples=_samples(), dead_letters=[],
                                    positions=[PartitionPosition("t", 0, 3, 3)],
                                    policy=HeldOutPolicy(fraction=0.0, min_per_label=10), dedupe_content=True)
        assert result.stored == 3
        rows = session.execute(select(Sample.external_id, Sample.text, Sample.topic, Sample.partition, Sample.offset,
                                      Sample.content_hash, Sample.held_out, Sample.event_ts, Sample.meta)
                               .order_by(Sample.offset)).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def _as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def test_every_field_round_trips(database_url: str) -> None:
    rows = _write(database_url)
    assert [(r[0], r[1], r[4], r[5], r[6]) for r in rows] == [
        ("id-0", "with everything", 0, "h0", False), (None, "bare", 1, "h1", False),
        (None, "ünïcödé ☃ text", 2, "h2", False)]
    assert _as_utc(rows[0][7]) == EVENT and rows[1][7] is None
    assert rows[0][8] == {"source": "web", "n": [1, 2], "ok": True}
    assert rows[1][8] is None and rows[2][8] == {}


def test_sqlite_fast_path_stores_exactly_what_the_core_insert_stores(tmp_path: Path) -> None:
    fast_url = f"sqlite:///{tmp_path / 'fast.db'}"
    core_url = f"sqlite:///{tmp_path / 'core.db'}"
    for url in (fast_url, core_url):
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    _write(fast_url)
    engine = make_engine(core_url)
    with Session(engine) as session, session.begin():
        label_ids = {}
        for name in ("a", "b"):
            label_ids[name] = session.execute(insert(Label.__table__).values(
                name=name, sample_count=0, heldout_count=0, first_seen_at=EVENT).returning(Label.__table__.c.id)
            ).scalar_one()
        session.execute(insert(Sample.__table__), [
            {"external_id": s.external_id, "text": s.text, "label_id": label_ids[s.label], "topic": s.topic,
             "partition": s.partition, "offset": s.offset, "content_hash": s.content_hash, "held_out": False,
             "event_ts": s.event_ts, "meta": s.meta, "ingested_at": EVENT + timedelta(seconds=1)}
            for s in _samples()])
    engine.dispose()

    def raw(url: str) -> list[tuple]:
        engine = make_engine(url)
        with engine.connect() as connection:
            found = connection.exec_driver_sql(
                'SELECT external_id, text, topic, "partition", "offset", content_hash, held_out, event_ts, meta, '
                "typeof(held_out), typeof(event_ts), typeof(meta), length(ingested_at) FROM sample "
                'ORDER BY "offset"').all()
        engine.dispose()
        return [tuple(row) for row in found]

    assert raw(fast_url) == raw(core_url)
