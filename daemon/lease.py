"""This daemon's hold on the database training lease (storage.lease).

Several daemons may share one database (a standby, a second replica for serving);
only the lease holder trains. The keeper renews the lease every third of its TTL.
It counts as held only until the expiry it last wrote, so when the database goes
away the holder stops considering itself the trainer no later than a standby could
take over, and its running retrain is cancelled rather than racing the new trainer.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from daemon.metrics import Metrics
from storage import lease

__all__ = ["LeaseKeeper"]

logger = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class LeaseKeeper:
    """Takes, renews and releases the training lease for one daemon."""

    def __init__(
        self,
        engine: Engine,
        *,
        ttl_s: float,
        metrics: Metrics,
        on_acquired: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.engine = engine
        self.ttl_ms = int(ttl_s * 1000)
        self.metrics = metrics
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        #: Unique per process start, readable by operators: host, pid, random suffix.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._expires_ms = 0
        self._was_held = False
        self._lock = threading.Lock()

    @property
    def renew_every_s(self) -> float:
        return self.ttl_ms / 3000

    @property
    def held(self) -> bool:
        return _now_ms() < self._expires_ms

    def tick(self) -> bool:
        """Take or renew the lease; fire the callbacks on a change. Returns whether it is held."""
        with self._lock:
            now = _now_ms()
            try:
                with Session(self.engine) as session:
                    if lease.acquire(session, holder=self.holder, ttl_ms=self.ttl_ms, now_ms=now):
                        self._expires_ms = now + self.ttl_ms
                    else:
                        self._expires_ms = 0
            except SQLAlchemyError as exc:
                # Keep what we have until it runs out: a blip must not stop training,
                # an outage longer than the TTL must.
                logger.warning("cannot renew the training lease: %s", exc.__class__.__name__)
            held = self.held
            changed = held != self._was_held
            self._was_held = held
        self.metrics.training_lease_held.set(1 if held else 0)
        if changed and held:
            logger.info("took the training lease as %s: this daemon trains", self.holder)
            self.on_acquired()
        elif changed:
            logger.error("lost the training lease (%s): this daemon no longer trains", self.holder)
            self.on_lost()
        return held

    def holder_info(self) -> dict[str, object]:
        """Who trains, for ``/v1/status``."""
        try:
            with Session(self.engine) as session:
                state = lease.read(session)
        except SQLAlchemyError:
            return {"held_by_this_daemon": self.held, "holder": None, "expires_at_ms": None}
        now = _now_ms()
        return {"held_by_this_daemon": self.held, "this_daemon": self.holder,
                "holder": state.holder if state.held_by_someone(now) else None,
                "expires_at_ms": state.expires_at_ms if state.held_by_someone(now) else None}

    def release(self) -> None:
        """Give the lease up on a clean stop, so a standby takes over at its next renewal."""
        with self._lock:
            if not self.held:
                return
            try:
                with Session(self.engine) as session:
                    lease.release(session, holder=self.holder)
            except SQLAlchemyError as exc:
                logger.warning("could not release the training lease (it expires by itself): %s", exc)
            self._expires_ms = 0
            self._was_held = False
        self.metrics.training_lease_held.set(0)
