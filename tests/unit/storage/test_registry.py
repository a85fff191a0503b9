from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlmodel import Session

from storage import registry
from storage.engine import make_engine, upgrade
from storage.models import ModelVersion


@pytest.fixture
def session(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def _version(session: Session, name: str, *, evaluated: bool = True) -> None:
    registry.record_version(session, ModelVersion(name=name, strategy="replay", artifact_path=f"/m/{name}",
                                                  checksum="0" * 64))
    if evaluated:
        registry.record_evaluations(session, run_id=None, version=name,
                                    rows=[registry.EvaluationRow("all", "macro_f1", 0.9, 10)])


class TestVersionNames:
    def test_next_version_name_counts_up(self, session: Session) -> None:
        assert registry.next_version_name(session) == "v0001"
        _version(session, "v0001")
        _version(session, "v0002")
        assert registry.next_version_name(session) == "v0003"

    def test_record_version_refuses_unsafe_names(self, session: Session) -> None:
        with pytest.raises(registry.RegistryError, match=r"invalid version name '\.\./x'"):
            registry.record_version(session, ModelVersion(name="../x", strategy="s", artifact_path="p", checksum="c"))

    def test_get_version_of_unsafe_name_is_none(self, session: Session) -> None:
        assert registry.get_version(session, "../../etc") is None


class TestPromote:
    def test_promote_moves_production_to_previous_and_records_why(self, session: Session) -> None:
        _version(session, "v0001")
        _version(session, "v0002")
        registry.promote(session, version="v0001", checks=[{"name": "min_absolute", "passed": True}])
        decision = registry.promote(session, version="v0002", actor="gate", reason="better")
        assert (registry.get_alias(session, "production"), registry.get_alias(session, "previous")) == ("v0002", "v0001")
        assert (decision.outcome, decision.production_before, decision.forced) == ("promoted", "v0001", False)

    def test_promote_refuses_unknown_unevaluated_and_current(self, session: Session) -> None:
        _version(session, "v0001")
        _version(session, "v0002", evaluated=False)
        with pytest.raises(registry.RegistryError, match="version 'v0009' does not exist"):
            registry.promote(session, version="v0009")
        with pytest.raises(registry.RegistryError, match="version v0002 was never evaluated; it cannot be promoted"):
            registry.promote(session, version="v0002", forced=True)
        registry.promote(session, version="v0001")
        with pytest.raises(registry.RegistryError, match="version v0001 is already production"):
            registry.promote(session, version="v0001")
        assert registry.get_alias(session, "production") == "v0001"

    def test_forced_promotion_is_recorded_as_forced(self, session: Session) -> None:
        _version(session, "v0001")
        decision = registry.promote(session, version="v0001", actor="alice", reason="hotfix", forced=True)
        assert (decision.outcome, decision.forced, decision.actor, decision.reason) == (
            "forced", True, "alice", "hotfix")


class TestRollback:
    def test_rollback_restores_previous_and_a_second_is_refused(self, session: Session) -> None:
        _version(session, "v0001")
        _version(session, "v0002")
        registry.promote(session, version="v0001")
        registry.promote(session, version="v0002")
        decision = registry.rollback(session, actor="bob", reason="bad")
        assert (decision.candidate, decision.production_before, decision.outcome) == ("v0001", "v0002", "rolled_back")
        assert (registry.get_alias(session, "production"), registry.get_alias(session, "previous")) == ("v0001", None)
        with pytest.raises(registry.RegistryError, match="no previous version to roll back to"):
            registry.rollback(session, actor="bob")
        assert registry.get_alias(session, "production") == "v0001"

    def test_rollback_to_a_version_that_is_no_longer_previous_changes_nothing(self, session: Session) -> None:
        # The operator's rollback prepared v0001, but another promotion moved the aliases meanwhile.
        for name in ("v0001", "v0002", "v0003"):
            _version(session, name)
        registry.promote(session, version="v0001")
        registry.promote(session, version="v0002")
        registry.promote(session, version="v0003", forced=True)  # previous is now v0002
        with pytest.raises(registry.RegistryError, match=r"previous is now v0002, was v0001\); try again"):
            registry.rollback(session, actor="bob", expected="v0001")
        assert (registry.get_alias(session, "production"), registry.get_alias(session, "previous")) == (
            "v0003", "v0002")
        assert registry.rollback(session, actor="bob", expected="v0002").candidate == "v0002"

    def test_rollback_without_any_promotion_is_refused(self, session: Session) -> None:
        with pytest.raises(registry.RegistryError, match="no previous version to roll back to"):
            registry.rollback(session, actor="bob")


class TestInterruptedRuns:
    def test_fail_interrupted_runs_closes_only_running_runs(self, session: Session) -> None:
        running = registry.create_run(session, trigger="manual")
        done = registry.create_run(session, trigger="schedule")
        registry.finish_run(session, run_id=int(done.id or 0), status="succeeded", outcome="promoted")
        assert registry.fail_interrupted_runs(session) == [running.id]
        closed = registry.get_run(session, int(running.id or 0))
        assert (closed.status, closed.error_reason) == ("failed", "interrupted")
        assert closed.finished_at is not None
        assert registry.get_run(session, int(done.id or 0)).status == "succeeded"
        assert registry.fail_interrupted_runs(session) == []


class TestRunBookkeeping:
    def test_takeover_closes_other_running_runs_but_keeps_its_own(self, session: Session) -> None:
        mine = registry.create_run(session, trigger="manual").id
        orphan = registry.create_run(session, trigger="schedule").id
        assert registry.fail_interrupted_runs(session, keep=mine) == [orphan]
        assert registry.get_run(session, mine).status == "running"
        assert (registry.get_run(session, orphan).status, registry.get_run(session, orphan).error_reason) == (
            "failed", "interrupted")

    def test_volume_watermark_ignores_cancelled_and_interrupted_runs(self, session: Session) -> None:
        done = registry.create_run(session, trigger="volume").id
        registry.set_run_fields(session, run_id=done, data_up_to=100)
        registry.finish_run(session, run_id=done, status="succeeded", outcome="promoted")
        failed = registry.create_run(session, trigger="volume").id
        registry.set_run_fields(session, run_id=failed, data_up_to=150)
        registry.finish_run(session, run_id=failed, status="failed", error_reason="error")
        assert registry.last_snapshot_watermark(session) == 150  # a failure does not retrigger at once
        cancelled = registry.create_run(session, trigger="volume").id
        registry.set_run_fields(session, run_id=cancelled, data_up_to=300)
        registry.finish_run(session, run_id=cancelled, status="cancelled", error_reason="cancelled")
        stopped = registry.create_run(session, trigger="volume").id
        registry.set_run_fields(session, run_id=stopped, data_up_to=400)
        registry.fail_interrupted_runs(session)
        assert registry.last_snapshot_watermark(session) == 150


class TestConcurrentMoves:
    """Daemons sharing one database may take operator actions at the same moment."""

    def test_racing_promotions_and_rollbacks_keep_a_consistent_history(self, database_url: str) -> None:
        engine = make_engine(database_url)
        names = [f"v{n:04d}" for n in range(1, 7)]
        with Session(engine) as session:
            for name in names:
                _version(session, name)
            registry.promote(session, version="v0001")
        barrier = threading.Barrier(len(names))
        errors: list[BaseException] = []

        def act(index: int) -> None:
            with Session(engine) as session:
                barrier.wait()
                for round_ in range(4):
                    try:
                        if (index + round_) % 3 == 0:
                            registry.rollback(session, actor=f"op{index}")
                        else:
                            registry.promote(session, version=names[(index + round_) % len(names)], forced=True,
                                             actor=f"op{index}")
                    except registry.RegistryError:
                        session.rollback()  # refused: already production, or nothing to roll back to
                    except Exception as exc:  # noqa: BLE001 - a lock timeout is a visible failure, not a lost update
                        session.rollback()
                        if "locked" not in str(exc):
                            errors.append(exc)

        threads = [threading.Thread(target=act, args=(i,)) for i in range(len(names))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        with Session(engine) as session:
            decisions = sorted(registry.latest_decisions(session, limit=1000), key=lambda d: d.id)
            production = registry.get_alias(session, registry.PRODUCTION)
        engine.dispose()
        assert len(decisions) > 3
        # Every move started from what the one before it left: no move was based on a stale read.
        for before, after in zip(decisions, decisions[1:], strict=False):
            assert after.production_before == before.candidate, (before, after)
        assert production == decisions[-1].candidate


class TestLatestChild:
    def test_latest_child_is_the_newest_version_trained_from_a_parent(self, session: Session) -> None:
        for name, parent in [("v0001", None), ("v0002", "v0001"), ("v0003", "v0001"), ("v0004", "v0003")]:
            registry.record_version(session, ModelVersion(name=name, parent=parent, strategy="replay",
                                                          artifact_path=f"/m/{name}", checksum="0" * 64))
        assert registry.latest_child(session, "v0001").name == "v0003"
        assert registry.latest_child(session, "v0003").name == "v0004"
        assert registry.latest_child(session, "v0004") is None


class TestEventOutbox:
    def test_moves_of_production_wait_for_delivery_and_rejections_never_do(self, session: Session) -> None:
        for name in ("v0001", "v0002", "v0003"):
            _version(session, name)
        first = registry.promote(session, version="v0001")
        second = registry.promote(session, version="v0002")
        registry.record_decision(session, candidate="v0003", outcome="rejected")
        back = registry.rollback(session, actor="op")
        assert [d.id for d in registry.undelivered_events(session)] == [first.id, second.id, back.id]
        registry.mark_event_delivered(session, second.id)
        registry.mark_event_delivered(session, second.id)  # twice is harmless
        assert [d.id for d in registry.undelivered_events(session)] == [first.id, back.id]
        assert registry.latest_delivered_event(session) == second.id  # first's event is superseded by it
        registry.mark_event_delivered(session, 10_000)  # unknown id: nothing to mark
