"""The prediction log's repository on a real SQLite file: join, live accuracy, bounded pruning."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlmodel import Session

from storage.engine import make_engine, upgrade
from storage.models import PredictionRecord, utcnow
from storage.predictions import NewPrediction, join_feedback, live_accuracy, prune_predictions, record_predictions


def _engine(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    return engine


def _row(rid: str, version: str, label: str | None, *, abstained: bool = False) -> NewPrediction:
    return NewPrediction(rid, version, label, 0.9, abstained, "h" * 64)


def test_feedback_joins_once_and_live_accuracy_counts_abstentions_as_wrong(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with Session(engine) as session:
        record_predictions(session, [_row("a", "v1", "x"), _row("b", "v1", "y"), _row("c", "v1", None, abstained=True),
                                     _row("d", "v2", "x")])
        assert join_feedback(session, {"a": "x", "b": "x", "c": "x", "zzz": "x"}) == {"a", "b", "c"}
        session.commit()
        assert join_feedback(session, {"a": "y"}) == set()  # already joined: the first truth stays
        session.commit()
        found = live_accuracy(session)
        assert set(found) == {"v1"} and (found["v1"].joined, found["v1"].correct) == (3, 1)
        assert found["v1"].accuracy == 1 / 3
        assert live_accuracy(session, ["v2"]) == {}
        # An abstention on a text that turns out out of scope was the right answer.
        record_predictions(session, [_row("e", "v3", None, abstained=True), _row("f", "v3", "x")])
        join_feedback(session, {"e": "oos", "f": "oos"})
        session.commit()
        assert live_accuracy(session, ["v3"], oos_label="oos")["v3"] == live_accuracy(session, ["v3"])["v3"].__class__(
            joined=2, correct=1)
        assert live_accuracy(session, ["v3"])["v3"].correct == 0
    engine.dispose()


def test_pruning_deletes_exactly_the_old_rows_in_bounded_batches(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    table = PredictionRecord.__table__  # type: ignore[attr-defined]
    with Session(engine) as session:
        record_predictions(session, [_row(f"r{i}", "v1", "x") for i in range(7)])
        session.execute(update(table).where(table.c.request_id.in_([f"r{i}" for i in range(5)]))
                        .values(created_at=utcnow() - timedelta(days=40)))
        session.commit()
        cutoff = utcnow() - timedelta(days=30)
        assert [prune_predictions(session, older_than=cutoff, batch=2) for _ in range(4)] == [2, 2, 1, 0]
        left = session.execute(select(table.c.request_id).order_by(table.c.id)).scalars().all()
        assert left == ["r5", "r6"]
        assert session.execute(select(func.count()).select_from(table)).scalar_one() == 2
    engine.dispose()


def test_feedback_that_repeats_a_stored_text_is_joined_though_not_stored_again(tmp_path: Path) -> None:
    from storage.ingest_store import NewSample, PartitionPosition, write_ingest_batch
    from storage.models import Sample
    from storage.split import HeldOutPolicy

    engine = _engine(tmp_path)
    policy = HeldOutPolicy(fraction=0.0, min_per_label=10)
    with Session(engine) as session:
        first = NewSample(topic="t", partition=0, offset=0, text="hello", label="greet", content_hash="h")
        write_ingest_batch(session, samples=[first], dead_letters=[], positions=[PartitionPosition("t", 0, 1, 1)],
                           policy=policy, dedupe_content=True)
        record_predictions(session, [_row("req-1", "v1", "greet")])
        again = NewSample(topic="t", partition=0, offset=1, text="hello", label="greet", content_hash="h",
                          external_id="req-1")
        result = write_ingest_batch(session, samples=[again], dead_letters=[],
                                    positions=[PartitionPosition("t", 0, 2, 2)], policy=policy, dedupe_content=True)
        assert (result.stored, result.duplicate_content, result.feedback) == (0, 1, 1)
        assert live_accuracy(session)["v1"].correct == 1
        assert session.execute(select(func.count()).select_from(Sample)).scalar_one() == 1
    engine.dispose()
