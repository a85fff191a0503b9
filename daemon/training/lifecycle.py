"""One retrain cycle, and the operator actions that move production.

A cycle: snapshot the data (training samples after production's watermark, plus the
texts of production's replay-buffer members) -> train a candidate in the worker
process -> evaluate candidate and production on the same held-out sets -> the gate
decides -> publish the artifact, record version, evaluations and decision -> if
promoted, switch the aliases, serve the new model and announce it on
``<prefix>.promotions``. Every step's outcome and timing lands on the run, so every
candidate ends in a recorded decision and every failure in a recorded reason.

Production only moves here: through the gate, a forced promotion or a rollback.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from daemon import failpoints
from daemon.config import Settings
from daemon.errors import DaemonError
from daemon.metrics import Metrics
from daemon.serving.events import EventPublisher, OrderedEvents, PublishError
from daemon.serving.predictor import LoadedVersion, Predictor
from daemon.training.evaluation import EvaluationOutcome, evaluate_models
from daemon.training.gate import Decision, decide
from daemon.training.rejection import advice, regressed_labels
from learners.calibration import Calibration
from learners.config import STRATEGY_COMPONENTS
from learners.data import Example
from learners.errors import LearnerError, TrainingFailed
from learners.handoff import Progress
from learners.model import load_classifier
from learners.train import TrainingSpec
from learners.worker import TrainingWorker, remove_partial_outputs
from storage import registry
from storage.artifacts import ArtifactError, ArtifactStore, Manifest
from storage.deletion import forgets_since, missing_sample_ids
from storage.errors import StoreUnavailable
from storage.labels import LabelPlan, apply_plan, changes_since
from storage.models import LabelChange, ModelVersion, PromotionDecision, Sample, TrainingRun, utcnow
from storage.samples import examples_by_ids, heldout_examples, recent_training_examples, training_examples

__all__ = ["ActionRefused", "Lifecycle", "TrainerLease", "UnknownVersion"]

logger = logging.getLogger(__name__)

#: How long a run that failed because the database went away keeps trying to record its
#: end: an outage of minutes then ends the run recorded, and the next retrain can start,
#: without restarting the daemon.
RECORD_FAILURE_WITHIN_S = 600.0
#: The trigger of a run that rebuilds from the base model on all remaining data
#: (``POST /v1/retrain {"rebuild": true}``, ``lifelong data forget --retrain-clean``).
REBUILD_TRIGGER = "rebuild"


class ActionRefused(DaemonError):
    """An operator action was refused; production is unchanged. The message says why."""


class UnknownVersion(ActionRefused):
    """The version an operator named does not exist."""


class TrainerLease(Protocol):
    """What a cycle needs to know about the training lease (daemon.training.lease.LeaseKeeper)."""

    holder: str

    @property
    def held(self) -> bool: ...


@dataclass
class _StepClock:
    run_id: int
    engine: Engine

    def record(self, step: str, started: float, status: str = "ok", **detail: Any) -> None:
        entry = {"step": step, "status": status, "seconds": round(time.perf_counter() - started, 3), **detail}
        with Session(self.engine) as session:
            registry.set_run_fields(session, run_id=self.run_id, step=entry)


class Lifecycle:
    """Runs retrain cycles and operator actions against one registry and artifact store."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        store: ArtifactStore,
        predictor: Predictor,
        publisher: EventPublisher | None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.predictor = predictor
        self.metrics = metrics or Metrics()
        #: Promotion events, queued in the order production moved (see OrderedEvents).
        self.events = OrderedEvents(publisher, on_failed=self._event_failed,
                                    on_delivered=self._event_delivered) if publisher is not None else None
        #: Set by the daemon: cycles stop at a step boundary once it is lost, and gate
        #: promotions check it in the promotion transaction. None: no lease (tests, tools).
        self.lease: TrainerLease | None = None
        self._worker: TrainingWorker | None = None
        self._cancel_reason: str | None = None
        #: Held while production moves (alias commit -> predictor swap), so that
        #: following production from the database never races a promotion in this process.
        self._moving = threading.Lock()
        #: Set when the daemon shuts down: a failed run stops waiting for the database to record it.
        self.shutting_down = threading.Event()

    # ------------------------------------------------------------------ start-up

    def take_over_training(self, *, active_run: int | None = None) -> list[int]:
        """Called when this daemon becomes the trainer (it took the training lease).

        Runs still recorded as running, except ``active_run`` (this process's own, when
        it regains a lease it lost during a database outage), belong to a trainer that
        stopped without finishing them (only the lease holder runs cycles), so they are
        closed as failed (``interrupted``), and what their workers left half-written is
        removed (unless a worker of ours may still be writing).
        """
        if active_run is None:
            remove_partial_outputs(self.store.incoming_dir())
        with Session(self.engine) as session:
            interrupted = registry.fail_interrupted_runs(session, keep=active_run)
            last_success = registry.last_success_time(session)
        if last_success is not None:
            # Alerts compare against it; a restart must not look like "never trained".
            self.metrics.training_last_success_timestamp.set(last_success)
        if interrupted:
            logger.warning("runs %s were interrupted by a stop and are recorded as failed", interrupted)
        self._redeliver_events()
        return interrupted

    def _redeliver_events(self) -> None:
        """Queue the events of production moves that never reached the broker (a trainer killed
        between the alias commit and the delivery); the trainer is the one daemon that sends them."""
        if self.events is None:
            return
        with Session(self.engine) as session:
            missed = registry.undelivered_events(session)
            latest = registry.latest_delivered_event(session)
        for decision in missed:
            if latest is not None and decision.id is not None and decision.id < latest:
                # A later move of production was announced already: this one would tell
                # consumers that production is what it no longer is.
                with Session(self.engine) as session:
                    registry.mark_event_delivered(session, decision.id)
                logger.warning("promotion event of decision %d (%s %s) was never delivered and is superseded by "
                               "a later one; not sent", decision.id, decision.outcome, decision.candidate)
                continue
            try:
                manifest = self.store.read_manifest(decision.candidate)
            except ArtifactError:
                manifest = None  # pruned since: the event still says what happened
            logger.warning("promotion event of decision %d (%s %s) was never delivered; sending it now",
                           decision.id, decision.outcome, decision.candidate)
            self.events.put(self._event(decision, manifest))

    def sync_serving(self) -> str | None:
        """Serve whatever the database says production is; returns the served version.

        At start, and periodically: a standby daemon (or one whose operator promoted
        through another instance) follows production without a restart.
        """
        if not self._moving.acquire(blocking=False):
            return self.predictor.version  # this process is moving production right now
        try:
            return self._follow_production()
        finally:
            self._moving.release()

    def _follow_production(self) -> str | None:
        with Session(self.engine) as session:
            version = registry.get_alias(session, registry.PRODUCTION)
            found = registry.get_version(session, version) if version else None
            promoted_at = registry.production_since(session)
        if found is None or self.predictor.version == found.name:
            return self.predictor.version
        try:
            self.predictor.activate(self.predictor.prepare(found.name, checksum=found.checksum))
        except (ArtifactError, LearnerError) as exc:
            logger.error("production version %s cannot be served: %s", found.name, exc)
            return self.predictor.version
        self._report_production(found, promoted_at)
        logger.info("serving production version %s", found.name)
        return found.name

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the running cycle at the next step boundary (the worker within seconds).

        A cycle that has already published its candidate is allowed to finish its
        decision: cancelling between publish and promotion would leave a version
        recorded without a decision.
        """
        self._cancel_reason = reason
        worker = self._worker
        if worker is not None:
            worker.cancel()

    # ------------------------------------------------------------------ the cycle

    def run_cycle(self, *, trigger: str, requested_by: str | None = None,
                  on_progress: Callable[[Progress], None] | None = None) -> TrainingRun:
        """One retrain; returns the finished run (succeeded, skipped or failed)."""
        return self.execute(self.begin_run(trigger=trigger, requested_by=requested_by), on_progress=on_progress)

    def begin_run(self, *, trigger: str, requested_by: str | None = None) -> int:
        """Record a new run (status ``running``) and return its id; :meth:`execute` does the work.

        Clears any earlier cancellation here, before the run's thread exists, so a
        cancel that arrives between the start of the thread and its first step is kept.
        """
        self._cancel_reason = None
        with Session(self.engine) as session:
            run = registry.create_run(session, trigger=trigger, requested_by=requested_by)
        return int(run.id or 0)

    def execute(self, run_id: int, *, on_progress: Callable[[Progress], None] | None = None) -> TrainingRun:
        """Carry out the cycle for a run made by :meth:`begin_run`."""
        clock = _StepClock(run_id, self.engine)
        candidate_dir = None
        try:
            started = time.perf_counter()
            with Session(self.engine) as session:
                run = registry.get_run(session, run_id)
                rebuild = run is not None and run.trigger == REBUILD_TRIGGER
            snapshot_at = utcnow()
            parent, train, replay, up_to, forget_ids = self._snapshot(rebuild=rebuild)
            # A rebuild starts from the base model on everything that remains: its weights never
            # saw a forgotten sample. Production (``parent``) is still what it must beat.
            start = None if rebuild else parent
            regressed, extra = ([], []) if rebuild else self._regressed_replay(parent, replay, up_to)
            replay = [*replay, *extra]
            with Session(self.engine) as session:
                registry.set_run_fields(session, run_id=run_id, parent_version=start.name if start else None,
                                        train_examples=len(train), replay_examples=len(replay), data_up_to=up_to)
            clock.record("snapshot", started, train=len(train), replay=len(replay), up_to_sample=up_to,
                         **({"regressed_labels": regressed, "regressed_replay": len(extra)} if regressed else {}),
                         **({"rebuild": True} if rebuild else {}),
                         **({"forgotten_in_buffer": len(forget_ids)} if forget_ids else {}))
            if not train:
                return self._finish(run_id, "skipped", error_reason="no_new_data")
            if self._stopping():
                return self._cancelled(run_id)

            if start is not None:
                try:  # the worker trains from these files: they must be the ones the registry recorded
                    self.store.verify(start.name, expected_checksum=start.checksum)
                except ArtifactError as exc:
                    logger.error("run %d: parent %s fails verification: %s", run_id, start.name, exc)
                    return self._finish(run_id, "failed", error_reason="parent_unverified", error=str(exc))
            with Session(self.engine) as session:
                version = registry.next_version_name(session)
                registry.set_run_fields(session, run_id=run_id, candidate_version=version)
            candidate_dir = self.store.incoming_dir() / version
            started = time.perf_counter()
            training = self.settings.training
            spec = TrainingSpec(
                output_dir=candidate_dir, train=train, replay=replay, strategy=training.strategy,
                buffer=training.buffer.to_config(),
                parent_dir=self.store.path_for(start.name) if start else None,
                base_model=training.base_model, min_samples_per_label=training.min_samples_per_label,
                device=training.device, torch_threads=training.torch_threads, forget_ids=sorted(forget_ids),
                adapter=training.adapter,
            )
            self._worker = TrainingWorker(spec, timeout_s=training.timeout_s, on_progress=on_progress,
                                          start_method=training.worker_start)
            if self._stopping():  # asked between the check above and the worker existing
                self._worker.cancel()
            try:
                result = self._worker.run()
            except TrainingFailed as exc:
                clock.record("train", started, status="failed", reason=exc.reason)
                if exc.reason == "cancelled":
                    return self._cancelled(run_id)
                return self._finish(run_id, "failed", error_reason=exc.reason, error=exc.detail)
            finally:
                self._worker = None
            clock.record("train", started, examples=result.examples_trained,
                         examples_per_second=round(result.examples_per_second, 2), new_labels=result.new_labels,
                         flagged_labels=result.flagged_labels,
                         **({"adapter": training.adapter.name, "artifact_bytes": result.artifact_bytes,
                             "trainable_parameters": result.trainable_parameters}
                            if training.adapter.enabled else {}))

            if self._stopping():
                return self._cancelled(run_id)
            started = time.perf_counter()
            outcome = self._evaluate(candidate_dir, parent, up_to)
            clock.record("evaluate", started, sets={k: v.n for k, v in outcome.candidate.items()})
            self.metrics.record_evaluation(outcome.summary())
            if self._stopping():
                return self._cancelled(run_id)

            with Session(self.engine) as session:
                relabeled = changes_since(session, snapshot_at)
            if relabeled:
                # The candidate's head has the names of the snapshot; publishing it would undo the change.
                return self._finish(run_id, "cancelled", error_reason="labels_changed",
                                    error=f"labels changed during the run ({relabeled}); retrain to train on them")
            started = time.perf_counter()
            decision = decide(outcome.gate_input(), self.settings.gate)
            clock.record("gate", started, promote=decision.promote, summary=decision.summary)

            started = time.perf_counter()
            lineage = {
                "parent": start.name if start else None,
                **({"rebuilt_while_serving": parent.name if parent else None} if rebuild else {}),
                "strategy": training.strategy.name,
                "hyperparameters": training.strategy.model_dump(),
                "data_watermark": up_to,
                "train_examples": len(train),
                "replay_examples": len(replay),
                "generation": result.generation,
                "run_id": run_id,
                # A LoRA version holds only its adapter and head: the base model it applies to, by fingerprint.
                **({"adapter": result.adapter} if result.adapter is not None else {}),
            }
            metrics = {**outcome.summary(), "gate": decision.to_dict()}
            manifest = self.store.publish(candidate_dir, version, lineage=lineage, metrics=metrics)
            candidate_dir = None
            with Session(self.engine) as session:
                forgotten = (start.forgotten_samples if start else 0) + \
                    self._forgotten_since(session, snapshot_at, [e.sample_id for e in train])
                registry.record_version(session, ModelVersion(
                    name=version, parent=start.name if start else None, run_id=run_id, forgotten_samples=forgotten,
                    generation=result.generation, strategy=training.strategy.name,
                    hyperparameters=training.strategy.model_dump(), data_watermark=up_to, labels=result.labels,
                    buffer_members=result.buffer_members, buffer_state=result.buffer_state,
                    artifact_path=str(self.store.path_for(version)), checksum=manifest.checksum, metrics=metrics,
                ))
                registry.record_evaluations(session, run_id=run_id, version=version,
                                            rows=EvaluationOutcome.rows(outcome.candidate)
                                            + outcome.slice_rows("candidate"))
                if parent is not None and outcome.production is not None:
                    registry.record_evaluations(session, run_id=run_id, version=parent.name,
                                                rows=EvaluationOutcome.rows(outcome.production)
                                                + outcome.slice_rows("production"))
            clock.record("publish", started, checksum=manifest.checksum)
            failpoints.reached(failpoints.AFTER_PUBLISH)

            started = time.perf_counter()
            try:
                outcome_name = self._apply(version, decision, run_id, new_labels=outcome.new_labels,
                                           checksum=manifest.checksum, snapshot_at=snapshot_at)
            except registry.LeaseLost as exc:
                clock.record("decide", started, status="failed", reason="lease_lost")
                self._cancel_reason = str(exc)
                return self._cancelled(run_id)
            clock.record("decide", started, outcome=outcome_name)
            self._prune()
            return self._finish(run_id, "succeeded", outcome=outcome_name)
        except Exception as exc:  # noqa: BLE001 - every run must end recorded, whatever broke
            logger.exception("retrain run %d failed", run_id)
            return self._record_failure(run_id, exc)
        finally:
            if candidate_dir is not None:
                shutil.rmtree(candidate_dir, ignore_errors=True)

    def _record_failure(self, run_id: int, exc: Exception) -> TrainingRun:
        """End the run as failed, waiting out a database outage (bounded, and not past a cancel)."""
        unavailable = (DBAPIError, StoreUnavailable)
        reason = "database_unavailable" if isinstance(exc, unavailable) else "error"
        error = f"{type(exc).__name__}: {exc}"
        deadline = time.monotonic() + RECORD_FAILURE_WITHIN_S
        told = False
        while True:
            try:
                return self._finish(run_id, "failed", error_reason=reason, error=error)
            except unavailable:
                # A lost lease (the outage itself takes it) is no reason to stop: the run is still ours.
                if time.monotonic() >= deadline or self.shutting_down.is_set():
                    raise
                if not told:
                    logger.warning("run %d failed and the database cannot record it yet; retrying until it can "
                                   "(at most %.0f s)", run_id, RECORD_FAILURE_WITHIN_S)
                    told = True
                self.shutting_down.wait(0.5)

    def _stopping(self) -> bool:
        """Whether the cycle must stop at this step boundary: cancelled, or no longer the trainer."""
        if self._cancel_reason is None and self.lease is not None and not self.lease.held:
            self._cancel_reason = "this daemon no longer holds the training lease"
        return self._cancel_reason is not None

    def _cancelled(self, run_id: int) -> TrainingRun:
        reason = self._cancel_reason or "cancelled"
        return self._finish(run_id, "cancelled", error_reason="cancelled",
                            error=f"cancelled before production could change ({reason})")

    def _snapshot(self, *, rebuild: bool = False) -> tuple[ModelVersion | None, list[Example], list[Example], int,
                                                           set[int]]:
        """Production, the new training examples, the replayed ones, the data watermark, and
        the ids in production's buffer that have been deleted since it chose them."""
        forget_ids: set[int] = set()
        with Session(self.engine) as session:
            production = registry.get_alias(session, registry.PRODUCTION)
            parent = registry.get_version(session, production) if production else None
            up_to = int(session.execute(select(func.coalesce(func.max(Sample.id), 0))).scalar_one())
            watermark = parent.data_watermark if parent and not rebuild else 0
            train = [Example(*row[:3]) for row in training_examples(session, after_id=watermark, up_to_id=up_to)]
            replay = [Example(*row[:3]) for row in examples_by_ids(session, parent.buffer_members)] \
                if parent and not rebuild else []
            if parent is not None and not rebuild:
                state = parent.buffer_state or {}
                chosen = [int(pair[0]) for key in ("members", "reserve") for pair in state.get(key, [])]
                forget_ids = missing_sample_ids(session, chosen)
        oos = self.settings.evaluation.oos_label
        if oos is not None:  # out-of-scope examples set the abstain threshold; they are never a class
            train = [e for e in train if e.label != oos]
            replay = [e for e in replay if e.label != oos]
        return parent, train, replay, up_to, forget_ids

    @staticmethod
    def _forgotten_since(session: Session, since: datetime, sample_ids: list[int]) -> int:
        """How many of this run's training samples a forget request removed while it trained
        (the request could not mark a version that did not exist yet)."""
        if not sample_ids or not forgets_since(session, since):
            return 0
        return len(missing_sample_ids(session, sample_ids))

    def _regressed_replay(self, parent: ModelVersion | None, replay: list[Example],
                          up_to: int) -> tuple[list[str], list[Example]]:
        """After a rejection for forgetting, the regressed labels and extra replay of their stored samples.

        Only when the last candidate trained from this same production model was
        rejected with failed ``label_forgetting:<label>`` checks, and the strategy replays;
        otherwise the retrain would repeat the rejected one on the same data.
        """
        per_label = self.settings.training.regressed_replay_per_label
        if parent is None or per_label == 0 or "replay" not in STRATEGY_COMPONENTS[self.settings.training.strategy.name]:
            return [], []
        with Session(self.engine) as session:
            child = registry.latest_child(session, parent.name)
            decisions = registry.latest_decisions(session, version=child.name, limit=1) if child else []
            if not decisions or decisions[0].outcome != "rejected":
                return [], []
            checks = decisions[0].checks
            labels = regressed_labels(checks)
            if not labels and any(c["name"] == "old_label_forgetting" and not c["passed"] for c in checks):
                labels = sorted(parent.labels)  # no label named (each below min_label_support): all old ones
            if not labels:
                return [], []
            have = {e.sample_id for e in replay}
            extra = [Example(*row[:3]) for row in recent_training_examples(session, labels=labels, per_label=per_label,
                                                                     up_to_id=up_to) if row.sample_id not in have]
        logger.info("candidate %s forgot %s: this retrain replays %d more of their samples", child.name if child
                    else "?", ", ".join(labels), len(extra))
        return labels, extra

    def _evaluate(self, candidate_dir: Any, parent: ModelVersion | None, up_to: int) -> EvaluationOutcome:
        candidate = load_classifier(candidate_dir)
        production = None
        if parent is not None:
            serving = self.predictor.serving
            production = serving.loaded if serving and serving.version == parent.name else \
                self.predictor.prepare(parent.name, checksum=parent.checksum).loaded
        with Session(self.engine) as session:
            heldout = heldout_examples(session, up_to_id=up_to, with_meta=bool(self.settings.gate.slices),
                                       newest_per_label=self.settings.evaluation.max_heldout_per_label)
        evaluation = self.settings.evaluation
        recorded = (parent.metrics or {}).get("calibration") if parent is not None else None
        return evaluate_models(candidate, production, heldout, recent_window=evaluation.recent_window,
                               batch_size=evaluation.batch_size, in_scope_abstain=evaluation.abstain_in_scope,
                               oos_label=evaluation.oos_label,
                               production_calibration=Calibration.from_dict(recorded) if recorded else None,
                               slices=self.settings.gate.slices, slice_top_n=self.settings.gate.slice_top_n)

    def _apply(self, version: str, decision: Decision, run_id: int, *, new_labels: list[str], checksum: str,
               snapshot_at: datetime | None = None) -> str:
        checks = decision.to_dict()["checks"]
        if not decision.promote:
            replays = "replay" in STRATEGY_COMPONENTS[self.settings.training.strategy.name]
            reason = f"{decision.summary}. {advice(decision, version=version, new_labels=new_labels, replays=replays)}"
            with Session(self.engine) as session:
                registry.record_decision(session, candidate=version, outcome="rejected", run_id=run_id, checks=checks,
                                         reason=reason)
            logger.info("candidate %s rejected: %s", version, reason)
            return "rejected"
        prepared = self.predictor.prepare(version, checksum=checksum)
        with self._moving:
            with Session(self.engine) as session:
                relabeled = changes_since(session, snapshot_at) if snapshot_at is not None else None
                if relabeled:  # a label change won the race for production (change_labels holds this lock too)
                    registry.record_decision(session, candidate=version, outcome="rejected", run_id=run_id,
                                             checks=checks, reason=f"labels changed during the run ({relabeled}); "
                                                                   "retrain to train on them")
                    return "rejected"
                record = registry.promote(session, version=version, run_id=run_id, checks=checks,
                                          reason=decision.summary,
                                          lease_holder=self.lease.holder if self.lease is not None else None)
            self._announce(self._went_live(prepared, record))
        return "promoted"

    def _finish(self, run_id: int, status: str, **fields: Any) -> TrainingRun:
        with Session(self.engine) as session:
            run = registry.finish_run(session, run_id=run_id, status=status, **fields)
        logger.info("run %d %s%s", run_id, status, f" ({fields})" if fields else "")
        return run

    def _prune(self) -> None:
        with Session(self.engine) as session:
            keep = {v for v in (registry.get_alias(session, registry.PRODUCTION),
                                registry.get_alias(session, registry.PREVIOUS)) if v}
        removed = self.store.prune(keep=keep, retain=self.settings.training.retain_versions)
        if removed:
            logger.info("pruned artifacts of %s", ", ".join(removed))

    # ------------------------------------------------------------------ operator actions

    def promote(self, version: str, *, actor: str, reason: str | None, force: bool = True) -> PromotionDecision:
        """Operator promotion of ``version``, recorded with the operator's reason.

        With ``force`` the gate is bypassed and the decision recorded as forced; without
        it, only a version the gate approved can be promoted (e.g. after a rollback).

        Raises
        ------
        ActionRefused
            Unknown or never-evaluated version, a gate rejection without ``force``, a
            failed artifact verification, or it is already production; production is
            unchanged.
        """
        try:
            with Session(self.engine) as session:
                found = registry.get_version(session, version)
                if found is None:
                    raise UnknownVersion(f"version {version!r} does not exist")
                gate = found.metrics.get("gate") or {}
                if not force and not gate.get("promote", False):
                    raise ActionRefused(f"the gate did not approve {version} ({gate.get('summary', 'no decision')}); "
                                        "promote it with force to override")
            prepared = self.predictor.prepare(version, checksum=found.checksum)
        except (registry.RegistryError, ArtifactError, LearnerError) as exc:
            raise ActionRefused(str(exc)) from exc
        with self._moving:
            try:
                with Session(self.engine) as session:
                    record = registry.promote(session, version=version, actor=actor, reason=reason, forced=force)
            except registry.RegistryError as exc:
                raise ActionRefused(str(exc)) from exc
            self._announce(self._went_live(prepared, record))
        return record

    def rollback(self, *, actor: str, reason: str | None) -> PromotionDecision:
        """Serve ``previous`` again. A second rollback in a row is refused (see storage.registry)."""
        try:
            with Session(self.engine) as session:
                previous = registry.get_alias(session, registry.PREVIOUS)
                found = registry.get_version(session, previous) if previous else None
            if previous is None or found is None:
                raise ActionRefused("no previous version to roll back to")
            prepared = self.predictor.prepare(previous, checksum=found.checksum)
        except (registry.RegistryError, ArtifactError, LearnerError) as exc:
            raise ActionRefused(str(exc)) from exc
        with self._moving:
            try:
                with Session(self.engine) as session:
                    record = registry.rollback(session, actor=actor, reason=reason, expected=prepared.version)
            except registry.RegistryError as exc:
                raise ActionRefused(str(exc)) from exc
            self._announce(self._went_live(prepared, record))
        return record

    def change_labels(self, plan: Callable[[Session], LabelPlan], *, actor: str, reason: str | None) -> LabelChange:
        """Rename, merge or retire labels: in the database, and in production's head at once.

        When production predicts an affected label, a version derived from it with the head
        changed the same way (``learners.relabel``, no training) is published and becomes
        production in the same transaction as the label change (decision ``relabeled``), so
        answers use the new names from the next request and the next candidate trains on
        from that head. ``plan`` checks the change against the database first.

        Raises
        ------
        LabelChangeError
            The change cannot apply as asked (unknown label, target exists without merge...).
        ActionRefused
            Production's files fail verification; nothing changed.
        """
        from learners.relabel import relabel_classifier

        with self._moving:
            with Session(self.engine) as session:
                checked = plan(session)
                production = registry.get_alias(session, registry.PRODUCTION)
                parent = registry.get_version(session, production) if production else None
                version = registry.next_version_name(session) if parent is not None and \
                    set(checked.mapping) & set(parent.labels) else None
            prepared = result = manifest = None
            if parent is not None and version is not None:
                out = self.store.incoming_dir() / version
                try:
                    self.store.verify(parent.name, expected_checksum=parent.checksum)
                    result = relabel_classifier(self.store.path_for(parent.name), out, checked.mapping,
                                                slda_shrinkage=self.settings.training.strategy.slda_fixed_shrinkage)
                    lineage = {"parent": parent.name, "strategy": parent.strategy,
                               "data_watermark": parent.data_watermark, "generation": parent.generation,
                               "relabel": {"kind": checked.kind, "mapping": checked.mapping}}
                    manifest = self.store.publish(out, version, lineage=lineage, metrics=parent.metrics)
                    prepared = self.predictor.prepare(version, checksum=manifest.checksum)
                except (ArtifactError, LearnerError, ValueError) as exc:
                    shutil.rmtree(out, ignore_errors=True)
                    raise ActionRefused(f"production's head cannot follow the change: {exc}") from exc
            with Session(self.engine) as session:
                change = apply_plan(session, checked, actor=actor, reason=reason, version=version)
                record = None
                if parent is not None and version is not None and result is not None and manifest is not None:
                    session.add(ModelVersion(
                        name=version, parent=parent.name, generation=parent.generation, strategy=parent.strategy,
                        hyperparameters=parent.hyperparameters, data_watermark=parent.data_watermark,
                        labels=result.labels, buffer_members=result.buffer_members,
                        buffer_state=result.buffer_state or {}, artifact_path=str(self.store.path_for(version)),
                        checksum=manifest.checksum, metrics=parent.metrics,
                        forgotten_samples=parent.forgotten_samples))
                    session.flush()
                    what = f"{checked.kind} {', '.join(checked.sources)}" + \
                        (f" -> {checked.target}" if checked.target else "")
                    try:
                        record = registry.promote(session, version=version, actor=actor, forced=True,
                                                  outcome="relabeled",
                                                  reason=f"{what}" + (f": {reason}" if reason else ""))
                    except registry.RegistryError as exc:
                        raise ActionRefused(f"production could not follow the change: {exc}") from exc
                else:
                    session.commit()
                session.refresh(change)
            if prepared is not None and record is not None:
                self._announce(self._went_live(prepared, record))
        self.metrics.label_changes.labels(kind=checked.kind).inc()
        logger.info("label %s of %s%s by %s%s", checked.kind, ", ".join(checked.sources),
                    f" -> {checked.target}" if checked.target else "", actor,
                    f"; production is now {version}" if version else "")
        return change

    def _went_live(self, prepared: LoadedVersion, record: PromotionDecision) -> dict[str, Any]:
        """Serve the new production model; returns the event that tells the world (the DB already says so)."""
        failpoints.reached(failpoints.AFTER_ALIAS)
        self.predictor.activate(prepared)
        manifest = self.store.read_manifest(prepared.version)
        with Session(self.engine) as session:
            found = registry.get_version(session, prepared.version)
        if found is not None:
            self._report_production(found, registry.epoch_seconds(record.created_at))
        self.metrics.count_production_change(outcome=record.outcome, actor=record.actor)
        return self._event(record, manifest)

    def _event(self, record: PromotionDecision, manifest: Manifest | None) -> dict[str, Any]:
        """The promotion event of ``record``; ``decision_id`` lets consumers drop a redelivery,
        ``time`` is when production moved (a redelivery says when it happened, not when sent)."""
        return {
            "type": "promotion",
            "decision_id": record.id,
            "version": record.candidate,
            "parent": manifest.lineage.get("parent") if manifest else None,
            "previous_production": record.production_before,
            "outcome": record.outcome,
            "forced": record.forced,
            "actor": record.actor,
            "reason": record.reason,
            "metrics": {k: v for k, v in manifest.metrics.items() if k != "gate"} if manifest else {},
            "artifact": str(self.store.path_for(record.candidate)),
            "checksum": manifest.checksum if manifest else None,
            "time": _as_utc(record.created_at).isoformat(),
        }

    def _event_delivered(self, event: dict[str, Any]) -> None:
        if event.get("decision_id") is not None:
            with Session(self.engine) as session:
                registry.mark_event_delivered(session, int(event["decision_id"]))

    def _report_production(self, version: ModelVersion, promoted_at: float | None) -> None:
        """Production's gauges from its version record (its evaluation from when it was a candidate)."""
        self.metrics.set_production(version.name, strategy=version.strategy, labels=len(version.labels),
                                    buffer_samples=len(version.buffer_members), promoted_at=promoted_at,
                                    sets=(version.metrics or {}).get("candidate"))
        self.metrics.production_forgotten.set(version.forgotten_samples or 0)

    def _announce(self, event: dict[str, Any]) -> None:
        """Queue the event; called under the production lock, so events keep production's order."""
        if self.events is not None:
            self.events.put(event)

    def _event_failed(self, event: dict[str, Any], exc: PublishError) -> None:
        # Production has moved and is serving; the event is a notification, so a broker
        # outage must not undo the promotion. The failure is counted and logged loudly.
        self.metrics.promotion_events_failed.inc()
        logger.error("%s", exc)

    def close(self) -> None:
        """Deliver the promotion events still queued (bounded), then close the publisher."""
        if self.events is not None:
            self.events.close()


def _as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive (they were stored in UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
