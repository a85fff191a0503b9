"""The model registry: training runs, versions, evaluations, decisions and aliases.

Production only moves through :func:`promote` (the gate's decision or an operator's
forced promotion) and :func:`rollback`; each switches the ``production`` and
``previous`` aliases and records the decision in one transaction, so the registry
never shows a production model without the decision that put it there. Moves are
serialized across every process sharing the database (:mod:`storage.locking`), so each
decision's ``production_before`` is the production the one before it left.

Rollback semantics: ``production`` becomes the ``previous`` version and ``previous``
is cleared, so a second rollback in a row is refused ("no previous version"): undoing
a rollback is a deliberate force-promotion, never an accident of pressing twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, select
from sqlmodel import Session

from storage import lease, locking
from storage.errors import StorageError
from storage.models import Alias, Evaluation, ModelVersion, PromotionDecision, TrainingRun, utcnow

__all__ = [
    "PRODUCTION",
    "PREVIOUS",
    "EvaluationRow",
    "LeaseLost",
    "RegistryError",
    "create_run",
    "epoch_seconds",
    "fail_interrupted_runs",
    "finish_run",
    "get_alias",
    "get_run",
    "get_version",
    "latest_delivered_event",
    "mark_event_delivered",
    "undelivered_events",
    "last_run",
    "last_snapshot_watermark",
    "last_success_time",
    "latest_child",
    "latest_decisions",
    "list_runs",
    "list_versions",
    "next_version_name",
    "production_since",
    "promote",
    "record_decision",
    "record_evaluations",
    "record_version",
    "rollback",
    "set_run_fields",
    "version_evaluations",
]

PRODUCTION = "production"
PREVIOUS = "previous"
_VERSION = re.compile(r"^v[0-9]{4,9}$")


class RegistryError(StorageError):
    """A registry operation was refused; the message says why (production is unchanged)."""


class LeaseLost(RegistryError):
    """A gate promotion was refused because its trainer no longer holds the training lease."""


@dataclass(frozen=True)
class EvaluationRow:
    eval_set: str
    metric: str
    value: float
    n: int
    label: str = ""


def next_version_name(session: Session) -> str:
    """``v0001``, ``v0002``, ...: safe as a directory name, ordered as text and as numbers."""
    names = session.execute(select(ModelVersion.name)).scalars().all()
    numbers = [int(name[1:]) for name in names if _VERSION.match(name)]
    return f"v{(max(numbers) + 1) if numbers else 1:04d}"


def create_run(session: Session, *, trigger: str, requested_by: str | None = None) -> TrainingRun:
    run = TrainingRun(trigger=trigger, requested_by=requested_by, status="running", steps=[])
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def get_run(session: Session, run_id: int) -> TrainingRun | None:
    return session.get(TrainingRun, run_id)


def set_run_fields(session: Session, *, run_id: int, step: dict[str, Any] | None = None, **fields: Any) -> TrainingRun:
    """Update a run's fields and append ``step`` to its step log; commits."""
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise RegistryError(f"training run {run_id} does not exist")
    for name, value in fields.items():
        setattr(run, name, value)
    if step is not None:
        run.steps = [*run.steps, step]
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def finish_run(session: Session, *, run_id: int, status: str, outcome: str | None = None,
               error_reason: str | None = None, error: str | None = None) -> TrainingRun:
    return set_run_fields(session, run_id=run_id, status=status, outcome=outcome, error_reason=error_reason,
                          error=error, finished_at=utcnow())


def fail_interrupted_runs(session: Session, *, keep: int | None = None) -> list[int]:
    """Mark runs still ``running`` (but ``keep``, this process's own) as failed (``interrupted``).

    Called by a daemon that has just taken the training lease: only the holder runs
    cycles, so any other running run belongs to a trainer that stopped (killed, or cut
    off from the database) before it could record the end; without this the run would
    claim to be running forever.
    """
    query = select(TrainingRun).where(TrainingRun.status == "running")
    if keep is not None:
        query = query.where(TrainingRun.id != keep)
    runs = list(session.execute(query).scalars())  # type: ignore[arg-type]
    for run in runs:
        run.status = "failed"
        run.error_reason = "interrupted"
        run.error = "the daemon stopped before the run finished"
        run.finished_at = utcnow()
        session.add(run)
    session.commit()
    return [int(run.id or 0) for run in runs]


def list_runs(session: Session, *, limit: int = 50) -> list[TrainingRun]:
    query = select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)  # type: ignore[union-attr]
    return list(session.execute(query).scalars())


def record_version(session: Session, version: ModelVersion) -> ModelVersion:
    if not _VERSION.match(version.name):
        raise RegistryError(f"invalid version name {version.name!r}")
    session.add(version)
    session.commit()
    session.refresh(version)
    return version


def get_version(session: Session, name: str) -> ModelVersion | None:
    if not _VERSION.match(name):
        return None
    return session.get(ModelVersion, name)


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.execute(select(ModelVersion).order_by(ModelVersion.name)).scalars())


def latest_child(session: Session, parent: str) -> ModelVersion | None:
    """The newest version trained from ``parent`` (the last candidate the gate saw against it)."""
    query = select(ModelVersion).where(ModelVersion.parent == parent).order_by(ModelVersion.name.desc()).limit(1)  # type: ignore[arg-type,attr-defined]
    return session.execute(query).scalars().first()


def record_evaluations(session: Session, *, run_id: int | None, version: str, rows: Iterable[EvaluationRow]) -> int:
    count = 0
    for row in rows:
        session.add(Evaluation(run_id=run_id, version=version, eval_set=row.eval_set, metric=row.metric,
                               label=row.label, value=float(row.value), n=row.n))
        count += 1
    session.commit()
    return count


def version_evaluations(session: Session, name: str) -> list[Evaluation]:
    query = select(Evaluation).where(Evaluation.version == name).order_by(Evaluation.id)  # type: ignore[arg-type]
    return list(session.execute(query).scalars())


def get_alias(session: Session, name: str) -> str | None:
    alias = session.get(Alias, name)
    return alias.version if alias else None


def _set_alias(session: Session, name: str, version: str | None) -> None:
    if version is None:
        session.execute(delete(Alias).where(Alias.name == name))  # type: ignore[arg-type]
        return
    alias = session.get(Alias, name)
    if alias is None:
        session.add(Alias(name=name, version=version))
    else:
        alias.version = version
        alias.updated_at = utcnow()
        session.add(alias)


def record_decision(session: Session, *, candidate: str, outcome: str, run_id: int | None = None,
                    checks: Sequence[dict[str, Any]] = (), actor: str = "gate", reason: str | None = None,
                    forced: bool = False) -> PromotionDecision:
    """Record a decision that does not move production (a rejection)."""
    decision = PromotionDecision(run_id=run_id, candidate=candidate, production_before=get_alias(session, PRODUCTION),
                                 outcome=outcome, forced=forced, actor=actor, reason=reason, checks=list(checks))
    session.add(decision)
    session.commit()
    session.refresh(decision)
    return decision


def promote(session: Session, *, version: str, run_id: int | None = None, checks: Sequence[dict[str, Any]] = (),
            actor: str = "gate", reason: str | None = None, forced: bool = False,
            lease_holder: str | None = None, outcome: str | None = None) -> PromotionDecision:
    """Make ``version`` production (the old production becomes previous) and record why, atomically.

    ``outcome`` overrides what is recorded (``relabeled``: production's head after a label
    change, which no gate evaluates). Anything the caller added to ``session`` commits with it.

    With ``lease_holder`` (a gate promotion at the end of a training run) the same
    transaction first checks, with the lease row locked, that the holder still holds
    the training lease: a trainer that lost it mid-run (paused, partitioned) must not
    move production under the daemon that took over.

    Raises
    ------
    RegistryError
        The version does not exist, is already production, (unless ``forced``) was
        never evaluated, or ``lease_holder`` no longer holds the training lease.
    """
    locking.serialize(session, locking.PRODUCTION_MOVES)
    if lease_holder is not None:
        now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
        if not lease.holds(session, holder=lease_holder, now_ms=now_ms):
            raise LeaseLost(f"{lease_holder} no longer holds the training lease; production is left to its holder")
    if get_version(session, version) is None:
        raise RegistryError(f"version {version!r} does not exist")
    current = get_alias(session, PRODUCTION)
    if current == version:
        raise RegistryError(f"version {version} is already production")
    evaluated = session.execute(
        select(func.count()).select_from(Evaluation).where(Evaluation.version == version)  # type: ignore[arg-type]
    ).scalar_one()
    if not evaluated and outcome != "relabeled":  # a relabeled head carries its parent's evaluation
        raise RegistryError(f"version {version} was never evaluated; it cannot be promoted")
    decision = PromotionDecision(run_id=run_id, candidate=version, production_before=current,
                                 outcome=outcome or ("forced" if forced else "promoted"), forced=forced, actor=actor,
                                 reason=reason, checks=list(checks))
    session.add(decision)
    _set_alias(session, PREVIOUS, current)
    _set_alias(session, PRODUCTION, version)
    session.commit()
    session.refresh(decision)
    return decision


def rollback(session: Session, *, actor: str, reason: str | None = None,
             expected: str | None = None) -> PromotionDecision:
    """Restore ``previous`` as production and clear ``previous``.

    ``expected``: the version the caller read as ``previous`` and prepared to serve; if
    ``previous`` has changed since (another promotion or rollback in between), nothing
    changes, so the served model can never differ from the production alias.

    Raises
    ------
    RegistryError
        There is no previous version (nothing was promoted twice, or a rollback just
        happened), or it is no longer ``expected``.
    """
    locking.serialize(session, locking.PRODUCTION_MOVES)
    previous = get_alias(session, PREVIOUS)
    current = get_alias(session, PRODUCTION)
    if previous is None or current is None:
        raise RegistryError("no previous version to roll back to")
    if expected is not None and previous != expected:
        raise RegistryError(f"production changed while the rollback was prepared (previous is now {previous}, "
                            f"was {expected}); try again")
    decision = PromotionDecision(candidate=previous, production_before=current, outcome="rolled_back",
                                 forced=True, actor=actor, reason=reason, checks=[])
    session.add(decision)
    _set_alias(session, PRODUCTION, previous)
    _set_alias(session, PREVIOUS, None)
    session.commit()
    session.refresh(decision)
    return decision


def production_since(session: Session) -> float | None:
    """Unix time production became what it is (its latest promotion or rollback), None without one."""
    version = get_alias(session, PRODUCTION)
    if version is None:
        return None
    query = (select(PromotionDecision.created_at)
             .where(PromotionDecision.candidate == version,
                    PromotionDecision.outcome.in_(("promoted", "forced", "rolled_back")))  # type: ignore[attr-defined]
             .order_by(PromotionDecision.id.desc()).limit(1))  # type: ignore[union-attr]
    found = session.execute(query).scalar_one_or_none()
    return epoch_seconds(found) if found is not None else None


def epoch_seconds(moment: datetime) -> float:
    """Unix time of a stored timestamp; SQLite hands them back naive, and they were written in UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def last_run(session: Session) -> TrainingRun | None:
    """The most recent run, whatever its status (the minimum gap between runs reads it)."""
    query = select(TrainingRun).order_by(TrainingRun.id.desc()).limit(1)  # type: ignore[union-attr]
    return session.execute(query).scalars().first()


def last_success_time(session: Session) -> float | None:
    """Unix time the newest succeeded run finished (metrics survive a restart through it)."""
    query = (select(TrainingRun.finished_at).where(TrainingRun.status == "succeeded")
             .order_by(TrainingRun.id.desc()).limit(1))  # type: ignore[union-attr]
    found = session.execute(query).scalar_one_or_none()
    return epoch_seconds(found) if found is not None else None


def last_snapshot_watermark(session: Session) -> int:
    """Highest sample id a run's snapshot covered (0 before the first); the volume trigger counts from it.

    Runs that were cancelled or interrupted by a stop do not count: their samples still
    wait for a run. Failed runs do, or a deterministic failure would retrigger at once.
    """
    query = select(func.max(TrainingRun.data_up_to)).where(
        TrainingRun.status != "cancelled",
        func.coalesce(TrainingRun.error_reason, "") != "interrupted")
    return int(session.execute(query).scalar_one() or 0)


def latest_decisions(session: Session, *, version: str | None = None, limit: int = 50) -> list[PromotionDecision]:
    query = select(PromotionDecision).order_by(PromotionDecision.id.desc()).limit(limit)  # type: ignore[union-attr]
    if version is not None:
        query = query.where(PromotionDecision.candidate == version)  # type: ignore[arg-type]
    return list(session.execute(query).scalars())


#: Decisions that moved production, and so have a promotion event.
_MOVED = ("promoted", "forced", "rolled_back")


def undelivered_events(session: Session) -> list[PromotionDecision]:
    """Decisions that moved production whose event never reached the broker, oldest first."""
    query = (select(PromotionDecision)
             .where(PromotionDecision.outcome.in_(_MOVED),  # type: ignore[attr-defined]
                    PromotionDecision.event_sent_at.is_(None))  # type: ignore[union-attr]
             .order_by(PromotionDecision.id))  # type: ignore[arg-type]
    return list(session.execute(query).scalars())


def mark_event_delivered(session: Session, decision_id: int) -> None:
    """Record that the promotion event of decision ``decision_id`` reached the broker."""
    decision = session.get(PromotionDecision, decision_id)
    if decision is not None and decision.event_sent_at is None:
        decision.event_sent_at = datetime.now(timezone.utc)
        session.add(decision)
        session.commit()


def latest_delivered_event(session: Session) -> int | None:
    """The id of the newest decision whose promotion event reached the broker."""
    return session.execute(select(func.max(PromotionDecision.id))  # type: ignore[arg-type]
                           .where(PromotionDecision.event_sent_at.is_not(None))).scalar_one()  # type: ignore[union-attr]
