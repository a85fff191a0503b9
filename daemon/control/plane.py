"""The operations behind the control API: status, models, promote/rollback, retrain, runs, predict.

They live here rather than on :class:`daemon.runtime.Daemon` so that the runtime only wires
parts together and this class only translates between the API's terms (JSON views,
:class:`~daemon.control.api.Refused` and friends) and the parts' own. It is built once the
parts exist and holds them as typed fields; the learning stack's modules are imported only
for types, so building it costs no torch import.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlmodel import Session

from daemon.config import Settings
from daemon.control.api import NotFound, Refused, Unavailable
from daemon.control.views import deletion_view, model_view, run_view, status_view
from daemon.ingest.consumer import IngestHealth
from daemon.metrics import Metrics
from storage import registry
from storage.deletion import ForgetCriteria, UnknownIds, deletions, forget
from storage.labels import LabelChangeError, LabelPlan, label_summaries, plan_merge, plan_rename, plan_retire

if TYPE_CHECKING:
    from daemon.serving.prediction_log import PredictionLog
    from daemon.serving.predictor import Predictor
    from daemon.training.drift import DriftMonitor
    from daemon.training.lease import LeaseKeeper
    from daemon.training.lifecycle import Lifecycle
    from daemon.training.retrain import RetrainCoordinator
    from daemon.training.scheduler import RetrainScheduler, Triggers

__all__ = ["ControlOperations"]

logger = logging.getLogger(__name__)


class ControlOperations:
    """What :class:`daemon.control.api.ControlPlane` asks for, over the daemon's running parts."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        metrics: Metrics,
        ingest_health: Callable[[], IngestHealth | None],
        predictor: Predictor,
        lifecycle: Lifecycle,
        coordinator: RetrainCoordinator,
        lease: LeaseKeeper,
        triggers: Triggers,
        scheduler: RetrainScheduler,
        prediction_log: PredictionLog | None = None,
        drift: DriftMonitor | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self._ingest_health = ingest_health
        self.predictor = predictor
        self.lifecycle = lifecycle
        self.coordinator = coordinator
        self.lease = lease
        self.triggers = triggers
        self.scheduler = scheduler
        self.prediction_log = prediction_log
        self.drift = drift

    def _session(self) -> Session:
        return Session(self.engine)

    def status(self) -> dict[str, Any]:
        from storage.predictions import LiveAccuracy, live_accuracy

        with self._session() as session:
            view = status_view(session, ingest=self._ingest_health(), serving=self.predictor.version,
                               active_run=self.coordinator.active_run, progress=self.coordinator.last_progress,
                               training=self._training_status())
            serving = self.predictor.version
            if self.prediction_log is not None and serving is not None:
                found = live_accuracy(session, [serving], oos_label=self.settings.evaluation.oos_label).get(serving)
                view["live_accuracy"] = {"version": serving, **(found or LiveAccuracy(0, 0)).to_dict()}
            return view

    def _training_status(self) -> dict[str, Any]:
        schedule = self.settings.schedule
        next_scheduled = self.scheduler.next_scheduled()
        return {
            "lease": self.lease.holder_info(),
            "schedule": {"interval_s": schedule.interval_s, "cron": schedule.cron, "timezone": schedule.timezone,
                         "next": next_scheduled.isoformat() if next_scheduled else None,
                         "min_gap_s": schedule.min_gap_s},
            "volume": {"threshold": schedule.volume_threshold,
                       "new_training_samples": self.triggers.new_training_samples()},
            "on_shutdown": self.settings.training.on_shutdown,
            "drift": self.drift.view() if self.drift is not None else {"enabled": False},
        }

    def list_models(self) -> list[dict[str, Any]]:
        with self._session() as session:
            aliases = (registry.get_alias(session, registry.PRODUCTION), registry.get_alias(session, registry.PREVIOUS))
            return [model_view(session, v, detail=False, aliases=aliases) for v in registry.list_versions(session)]

    def show_model(self, version: str) -> dict[str, Any] | None:
        from storage.predictions import LiveAccuracy, live_accuracy

        with self._session() as session:
            found = registry.get_version(session, version)
            if found is None:
                return None
            view = model_view(session, found, detail=True)
            live = live_accuracy(session, [version], oos_label=self.settings.evaluation.oos_label).get(version)
            view["live_accuracy"] = (live or LiveAccuracy(0, 0)).to_dict()
            return view

    def promote(self, version: str, *, actor: str, reason: str | None, force: bool) -> dict[str, Any]:
        from daemon.training.lifecycle import ActionRefused, UnknownVersion

        try:
            record = self.lifecycle.promote(version, actor=actor, reason=reason, force=force)
        except UnknownVersion as exc:
            raise NotFound(str(exc)) from exc
        except ActionRefused as exc:
            raise Refused(str(exc)) from exc
        return {"production": record.candidate, "previous": record.production_before, "outcome": record.outcome,
                "forced": record.forced}

    def rollback(self, *, actor: str, reason: str | None) -> dict[str, Any]:
        from daemon.training.lifecycle import ActionRefused

        try:
            record = self.lifecycle.rollback(actor=actor, reason=reason)
        except ActionRefused as exc:
            raise Refused(str(exc)) from exc
        return {"production": record.candidate, "rolled_back_from": record.production_before,
                "outcome": record.outcome}

    def retrain(self, *, requested_by: str | None, rebuild: bool = False) -> dict[str, Any]:
        outcome = self.triggers.fire("rebuild" if rebuild else "manual", requested_by=requested_by)
        if outcome.run_id is None:
            raise Refused(f"retrain refused: {outcome.detail}")
        return {"run_id": outcome.run_id, "started": outcome.result == "started", "rebuild": rebuild}

    def forget(self, criteria: ForgetCriteria, *, actor: str, reason: str | None,
               retrain_clean: bool = False) -> dict[str, Any]:
        """Carry out a forget request (one transaction); with ``retrain_clean``, then ask for a
        rebuild from the base model on what remains."""
        try:
            with self._session() as session:
                report = forget(session, criteria, actor=actor, reason=reason)
        except UnknownIds as exc:
            raise NotFound(str(exc)) from exc
        self.metrics.forget_requests.inc()
        self.metrics.count_deletion(report, cause="forget")
        with self._session() as session:
            production = registry.get_alias(session, registry.PRODUCTION)
            version = registry.get_version(session, production) if production else None
        if version is not None:
            self.metrics.production_forgotten.set(version.forgotten_samples or 0)
        logger.warning("forget request %s by %s: deleted %d samples (%d held out), %d logged answers; "
                       "versions that learned from them: %s", report.deletion_id, actor, report.samples,
                       report.heldout_samples, report.predictions, ", ".join(report.versions_affected) or "none")
        out = report.to_dict()
        out["production_learned_forgotten"] = bool(version is not None and version.name in report.versions_affected)
        if retrain_clean:
            out["rebuild"] = self.retrain(requested_by=f"forget request {report.deletion_id} ({actor})",
                                          rebuild=True)
        return out

    def labels(self) -> list[dict[str, Any]]:
        """Every current label: counts, old names, retired, and F1 from production's latest evaluation
        (or its nearest evaluated ancestor's, for a version that only relabeled its parent)."""
        with self._session() as session:
            version = registry.get_alias(session, registry.PRODUCTION)
            scored = None
            while version is not None and scored is None:
                if registry.version_evaluations(session, version):
                    scored = version
                    break
                found = registry.get_version(session, version)
                version = found.parent if found else None
            return [dict(vars(summary)) for summary in label_summaries(session, version=scored)]

    def change_labels(self, kind: str, *, sources: list[str], target: str | None, actor: str,
                      reason: str | None) -> dict[str, Any]:
        """Rename (one source to target), merge (sources into target) or retire (one source)."""
        from daemon.training.lifecycle import ActionRefused

        active = self.coordinator.active_run
        if active is not None:
            raise Refused(f"run {active} is training on the current labels; change them after it has ended")

        def plan(session: Session) -> LabelPlan:
            if kind == "rename":
                return plan_rename(session, sources[0], target or "")
            if kind == "merge":
                return plan_merge(session, sources, target or "")
            return plan_retire(session, sources[0])

        try:
            change = self.lifecycle.change_labels(plan, actor=actor, reason=reason)
        except LabelChangeError as exc:
            raise (NotFound(str(exc)) if "does not exist" in str(exc) else Refused(str(exc))) from exc
        except ActionRefused as exc:
            raise Refused(str(exc)) from exc
        return {"change_id": change.id, "kind": change.kind, "sources": change.sources, "target": change.target,
                "samples": change.samples, "production": change.version or self.predictor.version}

    def deletions(self, limit: int) -> list[dict[str, Any]]:
        with self._session() as session:
            return [deletion_view(entry) for entry in deletions(session, limit=limit)]

    def list_runs(self, limit: int) -> list[dict[str, Any]]:
        with self._session() as session:
            return [run_view(run) for run in registry.list_runs(session, limit=limit)]

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        with self._session() as session:
            run = registry.get_run(session, run_id)
            return run_view(run) if run else None

    def predict(self, texts: list[str], ids: list[str] | None = None) -> dict[str, Any]:
        from daemon.serving.predictor import NoProductionModel

        started = time.perf_counter()
        try:
            result = self.predictor.predict(texts)
        except NoProductionModel as exc:
            self.metrics.predict_requests.labels(result="unavailable").inc()
            raise Unavailable(str(exc)) from exc
        self.metrics.predict_latency.observe(time.perf_counter() - started)
        self.metrics.predict_requests.labels(result="ok").inc()
        self.metrics.predict_texts.inc(len(texts))
        self.metrics.predict_abstained.inc(sum(result.abstained))
        request_ids = ids if ids is not None else [uuid.uuid4().hex for _ in texts]
        confidences = [max(p.values(), default=0.0) for p in result.probabilities]
        if self.prediction_log is not None:
            self.prediction_log.submit(result.version, texts, request_ids, result.labels, confidences,
                                       result.abstained)
        if self.drift is not None:
            self.drift.observe_served(result.unsure, result.embeddings)
        return {"version": result.version,
                "predictions": [{"id": rid, "label": label, "abstained": abstained, "probabilities": probs}
                                for rid, label, abstained, probs in zip(request_ids, result.labels, result.abstained,
                                                                        result.probabilities, strict=True)]}
