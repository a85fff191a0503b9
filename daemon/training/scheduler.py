"""When retrains start: the schedule, data volume and operators, all through one door.

:class:`Triggers` is that door. Whatever asks: while a run is active, the trigger
joins it; otherwise this daemon must hold the training lease, and for the automatic
triggers the minimum gap since the last run must have passed (an operator asking for
a retrain gets one; a schedule time inside the gap is skipped, and the volume trigger
waits quietly until the gap ends), and then the single-flight coordinator starts the
run (re-checking the lease under its lock). Each outcome is counted by reason and
result, and each run records its trigger.

:class:`RetrainScheduler` runs the periodic jobs on APScheduler 3 (a
``BackgroundScheduler``): the interval or cron schedule, the volume check, the lease
renewal and following production. Every job has ``max_instances=1`` and
``coalesce=True``: runs missed while the process was busy or asleep fire once, not
once per missed time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from daemon.config import ScheduleSettings
from daemon.crontab import crontab_trigger
from daemon.metrics import Metrics
from daemon.training.lease import LeaseKeeper
from daemon.training.retrain import RetrainCoordinator, RetrainRefused

if TYPE_CHECKING:
    from daemon.training.drift import DriftMonitor
from storage import registry
from storage.samples import count_training_after

__all__ = ["JOB_DEFAULTS", "RetrainScheduler", "TriggerOutcome", "Triggers", "interval_seconds", "schedule_trigger"]

logger = logging.getLogger(__name__)

#: Every job: one instance at a time, and fire times missed while the process was busy
#: or asleep run once (not once per missed time), however late.
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}

_SCHEDULE_JOB = "retrain-schedule"
_VOLUME_JOB = "retrain-volume"
_DRIFT_JOB = "retrain-drift"
_LEASE_JOB = "training-lease"
_SERVING_JOB = "follow-production"


@dataclass(frozen=True)
class TriggerOutcome:
    """What a trigger did: ``started``, ``joined`` (a run was active), ``deferred`` or ``refused``."""

    reason: str
    result: str
    run_id: int | None = None
    detail: str = ""


class Triggers:
    """The only way a retrain starts."""

    def __init__(self, *, coordinator: RetrainCoordinator, lease: LeaseKeeper, engine: Engine,
                 schedule: ScheduleSettings, metrics: Metrics) -> None:
        self.coordinator = coordinator
        self.lease = lease
        self.engine = engine
        self.schedule = schedule
        self.metrics = metrics

    def fire(self, reason: str, *, requested_by: str | None = None) -> TriggerOutcome:
        outcome = self._decide(reason, requested_by)
        self.metrics.training_triggers.labels(reason=reason, result=outcome.result).inc()
        log = logger.info if outcome.result in ("started", "joined") else logger.warning
        log("trigger %s: %s%s%s", reason, outcome.result, f" run {outcome.run_id}" if outcome.run_id else "",
            f" ({outcome.detail})" if outcome.detail else "")
        return outcome

    def _decide(self, reason: str, requested_by: str | None) -> TriggerOutcome:
        active = self.coordinator.active_run
        if active is not None and reason == "rebuild":
            # Joining an incremental run would answer a rebuild with a model that still saw everything.
            return TriggerOutcome(reason, "refused", None,
                                  f"run {active} is in progress; ask for the rebuild again when it has ended")
        if active is not None:
            return TriggerOutcome(reason, "joined", active)
        if not self.lease.held:
            holder = self.lease.holder_info().get("holder")
            return TriggerOutcome(reason, "refused", None,
                                  f"another daemon holds the training lease ({holder or 'unknown holder'}); "
                                  "it trains, this one serves")
        if reason not in ("manual", "rebuild") and self.schedule.min_gap_s > 0:
            wait_s = self._gap_remaining_s()
            if wait_s > 0:
                return TriggerOutcome(reason, "deferred", None,
                                      f"schedule.min_gap_s: the last run started less than "
                                      f"{self.schedule.min_gap_s:.0f}s ago (ready in {wait_s:.0f}s)")
        try:
            ticket = self.coordinator.request(trigger=reason, requested_by=requested_by)
        except RetrainRefused as exc:
            return TriggerOutcome(reason, "refused", None, str(exc))
        return TriggerOutcome(reason, "started" if ticket.started else "joined", ticket.run_id)

    def _gap_remaining_s(self) -> float:
        with Session(self.engine) as session:
            last = registry.last_run(session)
        if last is None:
            return 0.0
        elapsed = time.time() - registry.epoch_seconds(last.started_at)
        return max(0.0, self.schedule.min_gap_s - elapsed)

    def new_training_samples(self) -> int:
        """Training samples stored after the newest run's snapshot (what the volume trigger counts)."""
        with Session(self.engine) as session:
            return count_training_after(session, after_id=registry.last_snapshot_watermark(session))

    def check_volume(self) -> TriggerOutcome | None:
        """Fire the volume trigger if enough new training samples arrived; None when not due."""
        threshold = self.schedule.volume_threshold
        if threshold is None or self.coordinator.active_run is not None or not self.lease.held:
            return None
        try:
            if self.schedule.min_gap_s > 0 and self._gap_remaining_s() > 0:
                return None  # fires once the gap has passed; no trigger counted meanwhile
            waiting = self.new_training_samples()
        except SQLAlchemyError as exc:
            logger.warning("volume check skipped, database unavailable: %s", exc.__class__.__name__)
            return None
        if waiting < threshold:
            return None
        return self.fire("volume")


def schedule_trigger(schedule: ScheduleSettings) -> BaseTrigger | None:
    """The APScheduler trigger for ``schedule.interval_s`` / ``schedule.cron``, or None."""
    if schedule.interval_s is not None:
        return IntervalTrigger(seconds=schedule.interval_s, timezone=schedule.timezone)
    if schedule.cron is not None:
        return crontab_trigger(schedule.cron, schedule.timezone)
    return None


def interval_seconds(trigger: BaseTrigger | None, now: datetime) -> float:
    """Seconds between the trigger's next two fire times (0 without one): what alerts compare against."""
    if trigger is None:
        return 0.0
    first = trigger.get_next_fire_time(None, now)
    if first is None:
        return 0.0
    second = trigger.get_next_fire_time(first, first + timedelta(microseconds=1))
    return (second - first).total_seconds() if second is not None else 0.0


class RetrainScheduler:
    """The daemon's periodic jobs on one APScheduler ``BackgroundScheduler``."""

    def __init__(self, *, triggers: Triggers, lease: LeaseKeeper, follow_production: Any,
                 follow_every_s: float, drift: DriftMonitor | None = None, drift_every_s: float = 30.0) -> None:
        self.triggers = triggers
        self.drift = drift
        self.drift_every_s = drift_every_s
        self.lease = lease
        self.follow_production = follow_production
        self.follow_every_s = follow_every_s
        schedule = triggers.schedule
        self._periodic: list[tuple[str, str, float, Callable[[], object]]] = []
        self._first_after_s = 10.0
        self._scheduler = BackgroundScheduler(
            timezone=schedule.timezone,
            job_defaults=JOB_DEFAULTS,
        )

    def every(self, seconds: float, job: Callable[[], object], *, job_id: str, name: str,
              first_after_s: float = 10.0) -> None:
        """Run ``job`` every ``seconds`` (first ``first_after_s`` after start) besides the
        retrain jobs, e.g. the retention pass; call before :meth:`start`."""
        self._periodic.append((job_id, name, seconds, job))
        self._first_after_s = first_after_s

    def start(self) -> None:
        schedule = self.triggers.schedule
        add = self._scheduler.add_job
        for job_id, name, seconds, job in self._periodic:
            add(job, IntervalTrigger(seconds=seconds), id=job_id, name=name,
                next_run_time=datetime.now(self._scheduler.timezone) + timedelta(seconds=self._first_after_s))
        add(self.lease.tick, IntervalTrigger(seconds=self.lease.renew_every_s), id=_LEASE_JOB,
            name="renew the training lease")
        add(self._follow, IntervalTrigger(seconds=self.follow_every_s), id=_SERVING_JOB,
            name="serve what the database says production is")
        trigger = schedule_trigger(schedule)
        if trigger is not None:
            add(self.triggers.fire, trigger, args=("schedule",), id=_SCHEDULE_JOB, name="scheduled retrain")
        if schedule.volume_threshold is not None:
            add(self.triggers.check_volume, IntervalTrigger(seconds=schedule.volume_check_s), id=_VOLUME_JOB,
                name=f"retrain after {schedule.volume_threshold} new samples")
        if self.drift is not None:
            add(self._check_drift, IntervalTrigger(seconds=self.drift_every_s), id=_DRIFT_JOB,
                name="retrain when live traffic drifts")
        self.triggers.metrics.training_schedule_interval.set(
            interval_seconds(trigger, datetime.now(self._scheduler.timezone)))
        self._scheduler.start()
        logger.info("retrain triggers: schedule=%s volume_threshold=%s min_gap_s=%s",
                    schedule.cron or (f"every {schedule.interval_s:g}s" if schedule.interval_s else "none"),
                    schedule.volume_threshold, schedule.min_gap_s)

    def stop_triggers(self) -> None:
        """Shutdown, first step: no new retrains and no model swaps; the lease keeps being renewed.

        The lease must outlive a retrain that is finishing (``training.on_shutdown:
        finish``), or a standby would take over and train while this daemon still can.
        """
        for job_id in (_SCHEDULE_JOB, _VOLUME_JOB, _SERVING_JOB, _DRIFT_JOB):
            if self._scheduler.get_job(job_id) is not None:
                self._scheduler.remove_job(job_id)

    def next_scheduled(self) -> datetime | None:
        job = self._scheduler.get_job(_SCHEDULE_JOB)
        return job.next_run_time if job is not None else None

    def shutdown(self) -> None:
        """Stop firing; a job already running finishes (they are all short)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def _check_drift(self) -> None:
        if self.drift is not None and self.lease.held:  # only the trainer asks for retrains
            self.drift.check()

    def _follow(self) -> None:
        try:
            self.follow_production()
        except SQLAlchemyError as exc:
            logger.warning("cannot read production from the database: %s", exc.__class__.__name__)
