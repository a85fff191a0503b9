"""Sample queries the retrain cycle builds its replay from."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from storage.engine import make_engine, upgrade
from storage.models import Label, Sample
from storage.samples import heldout_examples, recent_training_examples


@pytest.fixture
def session(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    upgrade(engine)
    with Session(engine) as s:
        labels = {name: Label(name=name) for name in ("a", "b", "c")}
        s.add_all(labels.values())
        s.commit()
        offset = 0
        for name, held_out in [("a", False), ("b", False), ("a", True), ("a", False), ("c", False), ("a", False)]:
            offset += 1
            s.add(Sample(text=f"{name}{offset}", label_id=labels[name].id, topic="t", partition=0, offset=offset,
                         content_hash=f"{offset:064d}", held_out=held_out))
        s.commit()
        yield s
    engine.dispose()


def test_recent_training_examples_are_the_newest_per_label_never_held_out(session: Session) -> None:
    got = recent_training_examples(session, labels=["a", "b"], per_label=2)
    assert [(e.sample_id, e.label) for e in got] == [(2, "b"), (4, "a"), (6, "a")]  # id order; 3 is held out


def test_recent_training_examples_respect_the_snapshot_and_skip_unknown_labels(session: Session) -> None:
    got = recent_training_examples(session, labels=["a", "zzz"], per_label=10, up_to_id=5)
    assert [e.sample_id for e in got] == [1, 4]
    assert recent_training_examples(session, labels=[], per_label=10) == []


def test_heldout_examples_keep_each_labels_newest_when_capped(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with Session(engine) as s:
        labels = {name: Label(name=name) for name in ("a", "b")}
        s.add_all(labels.values())
        s.commit()
        for offset, name in enumerate("aababbaaab", start=1):  # ids 1..10, all held out but id 10
            s.add(Sample(text=f"{name}{offset}", label_id=labels[name].id, topic="t", partition=0, offset=offset,
                         content_hash=f"{offset:064d}", held_out=offset != 10, meta={"n": offset}))
        s.commit()
        capped = heldout_examples(s, newest_per_label=2)
        assert [(e.sample_id, e.label) for e in capped] == [(5, "b"), (6, "b"), (8, "a"), (9, "a")]
        snapshot = heldout_examples(s, newest_per_label=2, up_to_id=6, with_meta=True)
        assert [(e.sample_id, e.meta) for e in snapshot] == [(2, {"n": 2}), (4, {"n": 4}), (5, {"n": 5}),
                                                             (6, {"n": 6})]
        assert len(heldout_examples(s)) == 9
        # The newest overall, of the labels asked for, oldest first (a drift reference window).
        assert [e.sample_id for e in heldout_examples(s, newest=3)] == [7, 8, 9]
        assert [e.sample_id for e in heldout_examples(s, labels={"b"}, newest=2, up_to_id=6)] == [5, 6]
        assert heldout_examples(s, labels=set(), newest=5) == []
        # The label filter holds with every other option too (it is applied in the database).
        assert [e.sample_id for e in heldout_examples(s, labels={"b"})] == [3, 5, 6]
        assert [e.sample_id for e in heldout_examples(s, labels={"a"}, newest_per_label=1, up_to_id=6)] == [4]
        assert heldout_examples(s, labels=set()) == []
    engine.dispose()
