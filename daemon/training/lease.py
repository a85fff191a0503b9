"""This daemon's hold on the database training lease (storage.lease).

Several daemons may share one database (a standby, a second replica for serving);
only the lease holder trains. The keeper renews the lease every third of its TTL.
It counts as held only until the expiry it last wrote and only once the takeover
work (closing runs a previous trainer left running) has succeeded. When a renewal
finds the lease gone (expired during a database outage, or taken), the running
retrain is asked to cancel; independently, each cycle re-checks the lease at its step
boundaries, and a gate promotion checks it again inside the promotion transaction, so
a trainer that lost the lease never moves production. Its worker may take a few
seconds to stop.
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
        #: The takeover callback succeeded for the current tenure.
        self._ready = False
        self._lock = threading.Lock()

    @property
    def renew_every_s(self) -> float:
        return self.ttl_ms / 3000

    @property
    def held(self) -> bool:
        """This daemon may train: the lease is ours (by the expiry we last wrote) and taken over."""
        return self._ready and _now_ms() < self._expires_ms

    def tick(self) -> bool:
        """Take or renew the lease; run the takeover or loss callback on a change. Returns :attr:`held`.

        Never raises: it runs on a scheduler thread, where an exception would only be
        logged by APScheduler and the keeper's state would be left half-updated.
        """
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
            ours = _now_ms() < self._expires_ms
            if ours and not self._ready:
                try:
                    self.on_acquired()
                except Exception:  # noqa: BLE001 - retried at the next tick
                    logger.exception("taking over training failed; retrying at the next renewal")
                else:
                    self._ready = True
                    logger.info("took the training lease as %s: this daemon trains", self.holder)
            lost = self._ready and not ours
            if lost:
                self._ready = False
            held = self.held
        self.metrics.training_lease_held.set(1 if held else 0)
        if lost:
            logger.error("lost the training lease (%s): this daemon no longer trains", self.holder)
            try:
                self.on_lost()
            except Exception:  # noqa: BLE001 - the cycle re-checks the lease by itself
                logger.exception("handling the loss of the training lease failed")
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
            if _now_ms() >= self._expires_ms:
                return
            try:
                with Session(self.engine) as session:
                    lease.release(session, holder=self.holder)
            except SQLAlchemyError as exc:
                logger.warning("could not release the training lease (it expires by itself): %s", exc)
            self._expires_ms = 0
            self._ready = False
        self.metrics.training_lease_held.set(0)
