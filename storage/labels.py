"""Label administration in the database: rename, merge, retire, and what each label holds.

A label's id never changes, so a rename is one row. Every old name stays as an *alias*
row (``Label.alias_of``) that ingestion resolves, so producers still sending the old
name store under the new one. A merge moves the sources' samples to the target (their
content hashes follow, so dedupe keeps working) and leaves the sources as aliases. A
retired label keeps its samples (for audit) but is no longer trained, evaluated or
predicted. The model's side of a change (its head rows) is ``learners.relabel``'s.

Each operation is checked whole before anything changes, and the caller commits it in
one transaction with the model version that follows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select, update
from sqlmodel import Session

from storage.errors import StorageError
from storage.models import Evaluation, Label, LabelChange, Sample, utcnow
from storage.split import content_hash

__all__ = ["LabelChangeError", "LabelPlan", "LabelSummary", "apply_plan", "changes_since", "label_summaries",
           "plan_merge", "plan_rename", "plan_retire", "resolve_aliases"]

_LABEL = Label.__table__  # type: ignore[attr-defined]
_SAMPLE = Sample.__table__  # type: ignore[attr-defined]
_REHASH_BATCH = 2000


class LabelChangeError(StorageError):
    """A label change that cannot apply as asked (the message says why); nothing changed."""


@dataclass(frozen=True)
class LabelPlan:
    """A checked change: which names map to which (``None``: retired), for the database and the model."""

    kind: str
    sources: tuple[str, ...]
    target: str | None
    #: Old name -> new name or None; names not listed keep theirs.
    mapping: dict[str, str | None]


def _active(session: Session, name: str) -> Label | None:
    found = session.scalars(select(Label).where(Label.name == name)).first()  # type: ignore[arg-type]
    return found if found is not None and found.alias_of is None else None


def _require(session: Session, name: str) -> Label:
    found = session.scalars(select(Label).where(Label.name == name)).first()  # type: ignore[arg-type]
    if found is None:
        raise LabelChangeError(f"label {name!r} does not exist")
    if found.alias_of is not None:
        target = session.get(Label, found.alias_of)
        raise LabelChangeError(f"label {name!r} was renamed or merged into {target.name if target else '?'!r}; "
                               "change that label instead")
    if found.retired_at is not None:
        raise LabelChangeError(f"label {name!r} is retired")
    return found


def _check_name(name: str, limit: int = 200) -> None:
    if not name.strip() or name != name.strip():
        raise LabelChangeError(f"label name {name!r} is empty or has surrounding spaces")
    if len(name) > limit or "\x00" in name:
        raise LabelChangeError(f"label name is longer than {limit} characters or holds a NUL")


def plan_rename(session: Session, old: str, new: str) -> LabelPlan:
    _require(session, old)
    _check_name(new)
    if old == new:
        raise LabelChangeError(f"label {old!r} already has that name")
    existing = session.scalars(select(Label).where(Label.name == new)).first()  # type: ignore[arg-type]
    if existing is not None and existing.alias_of is None:
        raise LabelChangeError(f"label {new!r} exists; to combine the two use merge ({old!r} into {new!r})")
    if existing is not None and existing.alias_of is not None:
        target = session.get(Label, existing.alias_of)
        if target is None or target.name != old:
            raise LabelChangeError(f"{new!r} is an old name of label {target.name if target else '?'!r}")
    return LabelPlan("rename", (old,), new, {old: new})


def plan_merge(session: Session, sources: Sequence[str], target: str) -> LabelPlan:
    if not sources:
        raise LabelChangeError("merge needs at least one label to merge into the target")
    if len(set(sources)) != len(sources):
        raise LabelChangeError("a label is named twice among the merge sources")
    if target in sources:
        raise LabelChangeError(f"the target {target!r} is also a source")
    for name in sources:
        _require(session, name)
    _check_name(target)
    existing = session.scalars(select(Label).where(Label.name == target)).first()  # type: ignore[arg-type]
    if existing is not None:
        _require(session, target)
    return LabelPlan("merge", tuple(sources), target, {name: target for name in sources})


def plan_retire(session: Session, name: str) -> LabelPlan:
    _require(session, name)
    return LabelPlan("retire", (name,), None, {name: None})


def _rehash(session: Session, label_id: int, name: str) -> None:
    """Content hashes cover (text, label name): after a rename or merge, recompute them so that
    a re-sent record under the new name is recognised as stored."""
    last = 0
    while True:
        rows = session.execute(select(_SAMPLE.c.id, _SAMPLE.c.text).where(_SAMPLE.c.label_id == label_id,
                                                                           _SAMPLE.c.id > last)
                               .order_by(_SAMPLE.c.id).limit(_REHASH_BATCH)).all()
        if not rows:
            return
        session.execute(update(_SAMPLE).where(_SAMPLE.c.id == bindparam("sample_id"))
                        .values(content_hash=bindparam("new_hash")),
                        [{"sample_id": sample_id, "new_hash": content_hash(text, name)} for sample_id, text in rows])
        last = rows[-1][0]


def apply_plan(session: Session, plan: LabelPlan, *, actor: str, reason: str | None,
               version: str | None = None) -> LabelChange:
    """Carry out a checked plan and record it; the caller commits (with the version, if any)."""
    moved = 0
    if plan.kind == "rename":
        (old,) = plan.sources
        assert plan.target is not None
        label = _require(session, old)
        stale = session.scalars(select(Label).where(Label.name == plan.target)).first()  # type: ignore[arg-type]
        if stale is not None:  # renaming back to an old name of this label: the alias row goes
            session.delete(stale)
            session.flush()
        label.name = plan.target
        session.add(label)
        session.flush()
        session.add(Label(name=old, alias_of=label.id))
        moved = label.sample_count
        _rehash(session, int(label.id or 0), plan.target)
    elif plan.kind == "merge":
        assert plan.target is not None
        target = _active(session, plan.target)
        if target is None:
            target = Label(name=plan.target)
            session.add(target)
            session.flush()
        for name in plan.sources:
            source = _require(session, name)
            session.execute(update(_SAMPLE).where(_SAMPLE.c.label_id == source.id).values(label_id=target.id))
            target.sample_count += source.sample_count
            target.heldout_count += source.heldout_count
            moved += source.sample_count
            source.sample_count = source.heldout_count = 0
            source.alias_of = target.id
            session.add(source)
            # Names that were aliases of a source now lead to the target.
            session.execute(update(_LABEL).where(_LABEL.c.alias_of == source.id).values(alias_of=target.id))
        session.add(target)
        session.flush()
        _rehash(session, int(target.id or 0), plan.target)
    elif plan.kind == "retire":
        (name,) = plan.sources
        label = _require(session, name)
        label.retired_at = utcnow()
        moved = label.sample_count
        session.add(label)
    else:  # pragma: no cover - plans come from the plan_* functions
        raise LabelChangeError(f"unknown label change {plan.kind!r}")
    change = LabelChange(kind=plan.kind, sources=list(plan.sources), target=plan.target, actor=actor, reason=reason,
                         samples=moved, version=version)
    session.add(change)
    session.flush()
    return change


def changes_since(session: Session, since: datetime) -> str | None:
    """A description of the label changes made after ``since``, None if there were none."""
    rows = list(session.scalars(select(LabelChange).where(LabelChange.created_at > since)  # type: ignore[arg-type]
                                .order_by(LabelChange.id)))  # type: ignore[arg-type]
    if not rows:
        return None
    return "; ".join(f"{r.kind} {', '.join(r.sources)}" + (f" -> {r.target}" if r.target else "") for r in rows)


def resolve_aliases(session: Session, names: Sequence[str]) -> dict[str, str]:
    """Old name -> current name, for those of ``names`` that were renamed or merged away."""
    if not names:
        return {}
    target = _LABEL.alias("target")
    query = (select(_LABEL.c.name, target.c.name).join(target, target.c.id == _LABEL.c.alias_of)
             .where(_LABEL.c.name.in_(sorted(set(names)))))
    return {old: new for old, new in session.execute(query)}


@dataclass(frozen=True)
class LabelSummary:
    name: str
    samples: int
    held_out: int
    retired: bool
    aliases: list[str]
    f1: float | None
    f1_support: int


def label_summaries(session: Session, *, version: str | None) -> list[LabelSummary]:
    """Every current label with its counts, old names, and (with ``version``) its held-out F1
    from that version's latest evaluation."""
    rows = list(session.scalars(select(Label).order_by(Label.name)))  # type: ignore[arg-type]
    aliases: dict[int, list[str]] = {}
    for row in rows:
        if row.alias_of is not None:
            aliases.setdefault(row.alias_of, []).append(row.name)
    f1: dict[str, tuple[float, int]] = {}
    if version is not None:
        latest = session.execute(select(func.max(Evaluation.run_id)).where(Evaluation.version == version)).scalar()  # type: ignore[arg-type]
        query = select(Evaluation.label, Evaluation.value, Evaluation.n).where(
            Evaluation.version == version, Evaluation.eval_set == "all", Evaluation.metric == "f1")  # type: ignore[arg-type]
        if latest is not None:
            query = query.where(Evaluation.run_id == latest)  # type: ignore[arg-type]
        f1 = {label: (value, n) for label, value, n in session.execute(query)}
    out = []
    for row in rows:
        if row.alias_of is not None:
            continue
        names = sorted(aliases.get(row.id or -1, []))
        # Evaluated before a rename: its F1 is under an old name.
        scored = next((f1[name] for name in (row.name, *names) if name in f1), None)
        out.append(LabelSummary(name=row.name, samples=row.sample_count, held_out=row.heldout_count,
                                retired=row.retired_at is not None, aliases=names,
                                f1=scored[0] if scored else None, f1_support=scored[1] if scored else 0))
    return out
