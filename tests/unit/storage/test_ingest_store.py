"""The ingest transaction stores every field as SQLAlchemy would, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import event, insert, select
from sqlmodel import Session

from storage.engine import make_engine, upgrade
from storage.errors import StoreUnavailable
from storage.ingest_store import (
    NewSample,
    PartitionPosition,
    StoredLog,
    load_logs,
    start_new_log,
    stored_hashes,
    write_ingest_batch,
)
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


def _stored(url: str, samples: list[NewSample]) -> None:
    engine = make_engine(url)
    with Session(engine) as session:
        write_ingest_batch(session, samples=samples, dead_letters=[], positions=[],
                           policy=HeldOutPolicy(fraction=0.0, min_per_label=10), dedupe_content=True)
    engine.dispose()


def test_content_dedupe_compares_the_full_hash_behind_the_prefix_index(database_url: str) -> None:
    prefix = "0123456789abcdef"
    stored_hash, twin_hash = prefix + "0" * 48, prefix + "f" * 48  # same indexed prefix, different content
    _stored(database_url, [NewSample(topic="t", partition=0, offset=0, text="a", label="x", content_hash=stored_hash)])
    engine = make_engine(database_url)
    with Session(engine) as session:
        assert stored_hashes(session, [twin_hash, "f" * 64]) == set()
        assert stored_hashes(session, [twin_hash, stored_hash]) == {stored_hash}
    with Session(engine) as session:
        result = write_ingest_batch(
            session,
            samples=[NewSample(topic="t", partition=0, offset=1, text="b", label="x", content_hash=twin_hash),
                     NewSample(topic="t", partition=0, offset=2, text="a", label="x", content_hash=stored_hash)],
            dead_letters=[], positions=[], policy=HeldOutPolicy(fraction=0.0, min_per_label=10), dedupe_content=True)
        assert (result.stored, result.duplicate_content) == (1, 1)
    with Session(engine) as session:
        assert sorted(session.execute(select(Sample.content_hash)).scalars()) == [stored_hash, twin_hash]
    engine.dispose()


def test_content_dedupe_lookup_uses_the_prefix_index(database_url: str) -> None:
    # Without the index every batch would scan the whole sample table. The planner uses an
    # expression index only when the query spells the same expression, so the statement
    # stored_hashes really sends (positions as literals, prefixes bound) is the one explained.
    engine = make_engine(database_url)
    sent: list[tuple[str, object]] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _conn, _cursor, statement, parameters, _context, _many: sent.append((statement, parameters)))
    with Session(engine) as session:
        stored_hashes(session, ["0123456789abcdef" + "0" * 48, "fedcba9876543210" + "0" * 48])
    (statement, parameters), = sent
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if not sqlite:
            connection.exec_driver_sql("SET enable_seqscan = off")  # an empty table is cheapest to scan
        explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(explain + statement, parameters))
    engine.dispose()
    assert ("USING INDEX ix_sample_content_key" if sqlite else "ix_sample_content_key") in plan, plan


def test_migration_replaces_the_full_hash_index_with_the_prefix_index(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        indexes = dict(connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sample'").all())
    engine.dispose()
    assert "substr(content_hash, 1, 16)" in indexes["ix_sample_content_key"]
    assert "ix_sample_content_hash" not in indexes and "ix_sample_external_id" not in indexes


def test_two_daemons_storing_the_same_content_at_once_store_it_once_on_sqlite(sqlite_url: str) -> None:
    # Group mode: daemons share a database, each reading its own partitions; a record re-sent
    # to another partition can reach both at the same moment. (PostgreSQL keeps the daemons'
    # batches parallel instead; see storage.ingest_store._write.)
    engine = make_engine(sqlite_url)
    rounds, per_batch = 15, 40
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def daemon(partition: int) -> None:
        policy = HeldOutPolicy(fraction=0.0, min_per_label=10)
        for round_ in range(rounds):
            batch = [NewSample(topic="t", partition=partition, offset=round_ * per_batch + i, text=f"r{round_}-{i}",
                               label="x", content_hash=f"{round_:04d}{i:04d}".ljust(64, "0"))
                     for i in range(per_batch)]
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                return  # the other daemon failed; its error is reported
            for attempt in range(20):
                try:
                    with Session(engine) as session:
                        write_ingest_batch(session, samples=batch, dead_letters=[],
                                           positions=[PartitionPosition("t", partition, (round_ + 1) * per_batch)],
                                           policy=policy, dedupe_content=True)
                    break
                except StoreUnavailable as exc:  # the ingest loop retries a batch the database refused
                    if attempt == 19:
                        errors.append(exc)
                        barrier.abort()
                        return

    threads = [threading.Thread(target=daemon, args=(p,)) for p in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    with Session(engine) as session:
        hashes = list(session.execute(select(Sample.content_hash)).scalars())
    engine.dispose()
    assert not errors, errors
    assert len(hashes) == len(set(hashes)) == rounds * per_batch


def _relabel_batch(session: Session, offset: int, pairs: list[tuple[str, str]], *, supersede: bool = True):
    from storage.split import content_hash

    samples = [NewSample(topic="t", partition=0, offset=offset + i, text=text, label=label,
                         content_hash=content_hash(text, label)) for i, (text, label) in enumerate(pairs)]
    return write_ingest_batch(session, samples=samples, dead_letters=[],
                              positions=[PartitionPosition("t", 0, offset + len(pairs), None)],
                              policy=HeldOutPolicy(fraction=0.0, min_per_label=1000), dedupe_content=True,
                              supersede=supersede)


def _stored_pairs(session: Session) -> list[tuple[str, str]]:
    rows = [tuple(row) for row in session.execute(
        select(Sample.text, Label.name).join(Label, Label.id == Sample.label_id).order_by(Sample.id))]
    session.rollback()  # end the read, so that the next batch can begin its own transaction
    return rows


def test_a_re_sent_text_with_a_new_label_supersedes_the_stored_sample(database_url: str) -> None:
    engine = make_engine(database_url)
    with Session(engine) as session:
        _relabel_batch(session, 0, [("refund my order", "billing"), ("where is my parcel", "shipping")])
        result = _relabel_batch(session, 2, [("refund my order", "refunds"), ("where is my parcel", "shipping")])
        assert (result.superseded, result.stored, result.duplicate_content) == (1, 1, 1)
        assert _stored_pairs(session) == [("where is my parcel", "shipping"), ("refund my order", "refunds")]
        counts = {label.name: label.sample_count for label in session.execute(select(Label)).scalars()}
        session.rollback()
        assert counts == {"billing": 0, "shipping": 1, "refunds": 1}
        # Within one batch the last record of a text wins.
        result = _relabel_batch(session, 4, [("new text", "a"), ("new text", "b")])
        assert (result.superseded, result.stored) == (1, 1)
        assert ("new text", "b") in _stored_pairs(session) and ("new text", "a") not in _stored_pairs(session)
        # keep: both labels stay.
        _relabel_batch(session, 6, [("new text", "c")], supersede=False)
        assert {("new text", "b"), ("new text", "c")} <= set(_stored_pairs(session))
    engine.dispose()


def test_a_recreated_topic_starts_a_new_log_past_every_old_position(database_url: str) -> None:
    """start_new_log: offsets back to 0 under the new topic id, and a base past the old log's positions."""
    engine = make_engine(database_url)
    policy = HeldOutPolicy(fraction=0.0, min_per_label=10)

    def logs() -> dict:
        with Session(engine) as session:
            return load_logs(session, ["t"])

    with Session(engine) as session:
        write_ingest_batch(session, samples=_samples(), dead_letters=[], policy=policy, dedupe_content=False,
                           positions=[PartitionPosition("t", 0, 3, 3, topic_id="old-id"),
                                      PartitionPosition("t", 1, 7, 7, topic_id="old-id")])
    assert logs() == {("t", 0): StoredLog(3, 0, "old-id"), ("t", 1): StoredLog(7, 0, "old-id")}
    with Session(engine) as session:
        assert start_new_log(session, "t", "new-id") == {0: 3, 1: 7}
    assert logs() == {("t", 0): StoredLog(0, 3, "new-id"), ("t", 1): StoredLog(0, 7, "new-id")}
    # The new log's offset 0 is stored at position 3: not a replay of the old log's offset 0.
    again = [NewSample(topic="t", partition=0, offset=3 + i, text=f"new log {i}", label="a", content_hash=f"n{i}")
             for i in range(3)]
    with Session(engine) as session:
        result = write_ingest_batch(session, samples=again, dead_letters=[], policy=policy, dedupe_content=False,
                                    positions=[PartitionPosition("t", 0, 3, 3, topic_id=None, offset_base=3)])
    assert (result.stored, result.duplicate_position) == (3, 0)
    assert logs()[("t", 0)] == StoredLog(3, 3, "new-id")  # a broker naming no topic id keeps the recorded one
    engine.dispose()
