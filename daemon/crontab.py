"""Standard 5-field crontab expressions on APScheduler 3.

APScheduler 3's ``CronTrigger.from_crontab`` passes the weekday field through with
its own numbering, 0 = Monday, where crontab means 0 (and 7) = Sunday: ``0 3 * * 0``
would run on Mondays and ``1-5`` Tuesday to Saturday. Operators write crontab, so the
weekday field is translated into day names, which APScheduler reads unambiguously.
"""

from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger

__all__ = ["crontab_trigger", "crontab_weekdays"]

_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    lowered = token.strip().lower()
    if lowered[:3] in _NAMES and (len(lowered) == 3 or lowered.isalpha()):
        return _NAMES.index(lowered[:3])
    if not lowered.isdigit() or int(lowered) > 7:
        raise ValueError(f"day of week {token!r} is not 0-7 or a day name")
    return int(lowered) % 7


def crontab_weekdays(field: str) -> str:
    """The crontab weekday ``field`` (0/7 = Sunday, names, ranges, lists, steps) as APScheduler day names."""
    days: set[int] = set()
    for part in field.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty item in day of week {field!r}")
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step in day of week {field!r} must be at least 1")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = _day(low), _day(high)
            if high.strip() == "7":
                last = 7  # "5-7" is Friday to Sunday
            if last < first:
                raise ValueError(f"range {span!r} in day of week runs backwards")
        else:
            first = _day(span)
            last = 6 if step_text else first  # "1/2": from Monday, every other day
        days.update(day % 7 for day in range(first, last + 1, step))
    if days == set(range(7)):
        return "*"
    return ",".join(_NAMES[day] for day in sorted(days))


def crontab_trigger(expression: str, timezone: str) -> CronTrigger:
    """A trigger for a standard crontab line ``minute hour day month weekday``.

    Raises
    ------
    ValueError
        Not five fields, or a field APScheduler or the weekday translation rejects.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=crontab_weekdays(weekday),
                       timezone=timezone)
