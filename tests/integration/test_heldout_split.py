"""The held-out split is decided once, deterministically, and covers every label."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlmodel import Session

from daemon.ingest.broker import EmbeddedBroker
from storage.engine import make_engine
from storage.models import Label, Sample
from tests.conftest import _migrate, produce, record, running_ingestor, settings_for

LABELS = 8
PER_LABEL = 40


def _records() -> list[bytes]:
    return [record(f"sentence {i} for {label}", f"label{label}", id=f"{label}-{i}")
            for i in range(PER_LABEL) for label in range(LABELS)]


def _split(url: str) -> dict[str, bool]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return dict(session.execute(select(Sample.external_id, Sample.held_out)).all())
    finally:
        engine.dispose()


class TestHeldOutAssignment:
    def test_split_is_identical_after_reingestion_into_a_fresh_database(
        self, broker: EmbeddedBroker, make_topic, sqlite_url: str, tmp_path: Path
    ) -> None:
        first_topic, second_topic = make_topic(), make_topic()
        sent = produce(broker.bootstrap_servers, first_topic, _records())
        with running_ingestor(settings_for(broker, first_topic, sqlite_url, tmp_path)) as running:
            running.wait_stored(sent)
        first = _split(sqlite_url)

        other_url = f"sqlite:///{tmp_path / 'other.db'}"
        _migrate(other_url)
        produce(broker.bootstrap_servers, second_topic, _records())
        with running_ingestor(settings_for(broker, second_topic, other_url, tmp_path)) as running:
            running.wait_stored(sent)

        assert len(first) == LABELS * PER_LABEL
        assert _split(other_url) == first

    def test_split_survives_restart_and_resent_records(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path
    ) -> None:
        sent = produce(broker.bootstrap_servers, topic, _records())
        settings = settings_for(broker, topic, sqlite_url, tmp_path)
        with running_ingestor(settings) as running:
            running.wait_stored(sent)
        before = _split(sqlite_url)

        sent += produce(broker.bootstrap_servers, topic, _records())  # the same records again
        with running_ingestor(settings) as running:
            running.wait_stored(sent)

        assert running.value("lifelong_ingest_records_duplicate_total", {"kind": "content"}) == LABELS * PER_LABEL
        assert _split(sqlite_url) == before

    def test_every_label_past_min_per_label_has_held_out_examples(
        self, broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path
    ) -> None:
        # 30 labels of 11 samples (min_per_label is 10): pure 10% hashing would leave about a third without any.
        values = [record(f"rare {i} of {label}", f"rare{label}") for label in range(30) for i in range(11)]
        sent = produce(broker.bootstrap_servers, topic, values)
        with running_ingestor(settings_for(broker, topic, sqlite_url, tmp_path)) as running:
            running.wait_stored(sent)
        engine = make_engine(sqlite_url)
        with Session(engine) as session:
            rows = session.execute(select(Label.name, Label.sample_count, Label.heldout_count)).all()
            held_by_label = {
                name: sum(1 for (h,) in session.execute(
                    select(Sample.held_out).join(Label).where(Label.name == name)) if h)
                for name, _, _ in rows
            }
        engine.dispose()
        assert len(rows) == 30
        assert all(held >= 1 for _, _, held in rows)
        # The label table's running counts agree with the samples themselves.
        assert {name: held for name, _, held in rows} == held_by_label
        assert all(total == 11 for _, total, _ in rows)
