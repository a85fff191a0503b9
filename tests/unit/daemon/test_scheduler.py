"""The scheduler's configuration: coalescing of missed runs, schedule intervals for alerts."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from daemon.config import load_settings
from daemon.crontab import crontab_trigger
from daemon.training.scheduler import JOB_DEFAULTS, interval_seconds, schedule_trigger


def test_missed_scheduled_runs_fire_once_not_once_per_missed_time() -> None:
    fired: list[float] = []
    scheduler = BackgroundScheduler(job_defaults=JOB_DEFAULTS)
    scheduler.add_job(lambda: fired.append(time.monotonic()), IntervalTrigger(seconds=0.5), id="j")
    scheduler.start(paused=True)  # the process is busy / asleep: four fire times pass
    try:
        time.sleep(2.2)
        scheduler.resume()
        deadline = time.monotonic() + 0.4
        while not fired and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert len(fired) == 1, f"missed runs fired {len(fired)} times"
    finally:
        scheduler.shutdown(wait=True)


def test_a_job_never_runs_twice_at_once() -> None:
    running, overlaps, finished = [0], [0], threading.Event()

    def slow() -> None:
        running[0] += 1
        overlaps[0] = max(overlaps[0], running[0])
        time.sleep(0.6)
        running[0] -= 1
        finished.set()

    scheduler = BackgroundScheduler(job_defaults=JOB_DEFAULTS)
    scheduler.add_job(slow, IntervalTrigger(seconds=0.1), id="slow")
    scheduler.start()
    try:
        time.sleep(1.5)
    finally:
        scheduler.shutdown(wait=True)
    assert finished.is_set() and overlaps[0] == 1


def test_schedule_interval_in_seconds_for_interval_cron_and_none() -> None:
    now = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)
    assert interval_seconds(schedule_trigger(load_settings(schedule={"interval_s": 900}).schedule), now) == 900
    nightly = schedule_trigger(load_settings(schedule={"cron": "0 3 * * *"}).schedule)
    assert interval_seconds(nightly, now) == 86_400
    hourly_workdays = schedule_trigger(load_settings(schedule={"cron": "15 * * * 1-5"}).schedule)
    assert interval_seconds(hourly_workdays, now) == 3_600
    assert interval_seconds(schedule_trigger(load_settings().schedule), now) == 0


@pytest.mark.parametrize(("weekday", "expected"), [
    ("0", ["Sun"]), ("7", ["Sun"]), ("1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
    ("5-7", ["Fri", "Sat", "Sun"]), ("sat,sun", ["Sat", "Sun"]), ("mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
    ("*/2", ["Sun", "Tue", "Thu", "Sat"]), ("*", ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]),
])
def test_cron_weekdays_mean_what_crontab_means(weekday: str, expected: list[str]) -> None:
    """APScheduler counts weekdays from Monday; a crontab's 0 is Sunday."""
    trigger = crontab_trigger(f"0 3 * * {weekday}", "UTC")
    moment = datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc)  # a Sunday
    seen = []
    for _ in range(7):
        moment = trigger.get_next_fire_time(None, moment)
        seen.append(moment.strftime("%a"))
        moment += timedelta(minutes=1)
    assert set(seen) == set(expected)
    assert moment.hour == 3


@pytest.mark.parametrize("weekday", ["8", "fri-mon", "x", "1/0", ""])
def test_bad_weekday_fields_are_refused(weekday: str) -> None:
    with pytest.raises(ValueError):
        crontab_trigger(f"0 3 * * {weekday}".strip(), "UTC")
