"""The training lease on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import Session

from storage import lease
from storage.engine import make_engine

TTL = 30_000


def test_one_holder_until_expiry_then_takeover(database_url: str) -> None:
    engine = make_engine(database_url)
    with Session(engine) as session:
        assert lease.acquire(session, holder="a", ttl_ms=TTL, now_ms=1_000)
        assert not lease.acquire(session, holder="b", ttl_ms=TTL, now_ms=2_000)
        assert lease.acquire(session, holder="a", ttl_ms=TTL, now_ms=20_000)  # renewal extends
        assert not lease.acquire(session, holder="b", ttl_ms=TTL, now_ms=45_000)
        assert lease.read(session) == lease.LeaseState(holder="a", acquired_at_ms=1_000, expires_at_ms=50_000)
        assert lease.acquire(session, holder="b", ttl_ms=TTL, now_ms=50_001)  # a stopped renewing
        assert not lease.acquire(session, holder="a", ttl_ms=TTL, now_ms=50_002)  # and cannot renew a lost lease
        assert lease.read(session).holder == "b"
    engine.dispose()


def test_release_frees_it_at_once_and_only_for_the_holder(database_url: str) -> None:
    engine = make_engine(database_url)
    with Session(engine) as session:
        assert lease.acquire(session, holder="a", ttl_ms=TTL, now_ms=1_000)
        assert not lease.release(session, holder="b")
        assert lease.release(session, holder="a")
        assert lease.acquire(session, holder="b", ttl_ms=TTL, now_ms=1_001)
    engine.dispose()


def test_racing_contenders_get_exactly_one_winner(database_url: str) -> None:
    engine = make_engine(database_url, busy_timeout_ms=10_000)
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def contend(name: str) -> None:
        with Session(engine) as session:
            barrier.wait()
            if lease.acquire(session, holder=name, ttl_ms=TTL, now_ms=5_000):
                winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"d{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    with Session(engine) as session:
        assert lease.read(session).holder == winners[0]
    engine.dispose()


def test_a_gate_promotion_needs_the_lease_in_the_same_transaction(database_url: str) -> None:
    import time as _time

    from storage import registry
    from storage.models import ModelVersion

    engine = make_engine(database_url)
    now = int(_time.time() * 1000)
    with Session(engine) as session:
        for name in ("v0001", "v0002"):
            registry.record_version(session, ModelVersion(name=name, strategy="replay", artifact_path=f"/m/{name}",
                                                          checksum="0" * 64))
            registry.record_evaluations(session, run_id=None, version=name,
                                        rows=[registry.EvaluationRow("all", "macro_f1", 0.9, 10)])
        assert lease.acquire(session, holder="trainer", ttl_ms=TTL, now_ms=now)
        registry.promote(session, version="v0001", lease_holder="trainer")
        with pytest.raises(registry.LeaseLost, match="other no longer holds the training lease"):
            registry.promote(session, version="v0002", lease_holder="other")
        assert lease.release(session, holder="trainer")
        with pytest.raises(registry.LeaseLost):
            registry.promote(session, version="v0002", lease_holder="trainer")
        assert registry.get_alias(session, registry.PRODUCTION) == "v0001"
        registry.promote(session, version="v0002", actor="operator")  # operators need no lease
        assert registry.get_alias(session, registry.PRODUCTION) == "v0002"
    engine.dispose()
