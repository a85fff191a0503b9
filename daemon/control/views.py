"""JSON views of registry rows for the API and the CLI's ``--json`` output."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from daemon.ingest.consumer import IngestHealth
from storage import registry
from storage.models import DataDeletion, ModelVersion, TrainingRun
from storage.stats import ingest_summary

__all__ = ["deletion_view", "model_view", "run_view", "status_view"]


def _ts(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def run_view(run: TrainingRun) -> dict[str, Any]:
    return {
        "id": run.id, "trigger": run.trigger, "requested_by": run.requested_by, "status": run.status,
        "outcome": run.outcome, "error_reason": run.error_reason, "error": run.error,
        "parent_version": run.parent_version, "candidate_version": run.candidate_version,
        "train_examples": run.train_examples, "replay_examples": run.replay_examples, "steps": run.steps,
        "started_at": _ts(run.started_at), "finished_at": _ts(run.finished_at),
    }


def model_view(session: Session, version: ModelVersion, *, detail: bool,
               aliases: tuple[str | None, str | None] | None = None) -> dict[str, Any]:
    """One version for the API; ``aliases`` (production, previous) saves two queries per version in lists."""
    if aliases is None:
        aliases = (registry.get_alias(session, registry.PRODUCTION), registry.get_alias(session, registry.PREVIOUS))
    production, previous = aliases
    decisions = registry.latest_decisions(session, version=version.name, limit=20)
    view: dict[str, Any] = {
        "version": version.name, "parent": version.parent, "generation": version.generation,
        "strategy": version.strategy, "labels": len(version.labels), "data_watermark": version.data_watermark,
        "checksum": version.checksum, "created_at": _ts(version.created_at),
        "forgotten_samples": version.forgotten_samples or 0,
        "aliases": [name for name, v in ((registry.PRODUCTION, production), (registry.PREVIOUS, previous))
                    if v == version.name],
        "metrics": (version.metrics.get("candidate") or {}),
        "decision": decisions[-1].outcome if decisions else None,
    }
    if detail:
        view.update({
            "hyperparameters": version.hyperparameters, "label_names": version.labels,
            "buffer_size": len(version.buffer_members), "artifact_path": version.artifact_path,
            "run_id": version.run_id, "evaluation": version.metrics,
            "decisions": [{"outcome": d.outcome, "forced": d.forced, "actor": d.actor, "reason": d.reason,
                           "production_before": d.production_before, "checks": d.checks,
                           "at": _ts(d.created_at)} for d in decisions],
        })
    return view


def deletion_view(entry: DataDeletion) -> dict[str, Any]:
    return {"id": entry.id, "cause": entry.cause, "actor": entry.actor, "reason": entry.reason,
            "criteria": entry.criteria, "samples": entry.samples, "heldout_samples": entry.heldout_samples,
            "predictions": entry.predictions, "dead_letters": entry.dead_letters,
            "versions_affected": entry.versions_affected, "at": _ts(entry.created_at)}


def status_view(session: Session, *, ingest: IngestHealth | None, serving: str | None, active_run: int | None,
                progress: Any, training: dict[str, Any] | None = None) -> dict[str, Any]:
    summary = ingest_summary(session)
    last = registry.list_runs(session, limit=1)
    return {
        "samples": {"train": summary.counts.train, "held_out": summary.counts.held_out,
                    "total": summary.counts.train + summary.counts.held_out},
        "labels": summary.counts.labels,
        "dead_letters": dict(summary.dead_letters),
        "partitions": [{"topic": p.topic, "partition": p.partition, "next_offset": p.next_offset,
                        "high_watermark": p.high_watermark, "lag": p.lag} for p in summary.partitions],
        "ingest": None if ingest is None else {"broker_connected": ingest.broker_connected,
                                               "database_ok": ingest.database_ok, "failing": ingest.failing,
                                               "last_error": ingest.last_error},
        "production": registry.get_alias(session, registry.PRODUCTION),
        "previous": registry.get_alias(session, registry.PREVIOUS),
        "serving": serving,
        "active_run": active_run,
        "progress": None if progress is None else {
            "epoch": progress.epoch, "epochs": progress.epochs, "step": progress.step,
            "steps_per_epoch": progress.steps_per_epoch, "examples_per_second": progress.examples_per_second,
            "loss": progress.loss},
        "last_run": run_view(last[0]) if last else None,
        "training": training,
    }
