"""Every Prometheus metric lifelong exports, defined once.

Metrics hang off a :class:`Metrics` object built against a ``CollectorRegistry`` so
that each test (and each embedded daemon in one process) gets its own registry and
can read values with ``registry.get_sample_value(...)``. Labelled counters are
created for every known label value at start so that they export 0, not nothing,
before the first event — rate() and absent() alerts depend on that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "DEAD_LETTER_REASONS",
    "DELETED_KINDS",
    "DELETION_CAUSES",
    "DRIFT_DETECTORS",
    "DUPLICATE_KINDS",
    "EVAL_SETS",
    "LABEL_CHANGES",
    "MODEL_ROLES",
    "PII_ENTITIES",
    "PREDICT_RESULTS",
    "PROMOTION_KINDS",
    "RUN_OUTCOMES",
    "TRIGGER_REASONS",
    "TRIGGER_RESULTS",
    "MetricDoc",
    "Metrics",
    "catalog",
]

#: Why a record became a dead letter: the values of ``daemon.ingest.records.Reason``
#: (listed here so that this module imports no concern; a unit test keeps them equal).
DEAD_LETTER_REASONS = (
    "null_value", "too_large", "invalid_utf8", "not_json", "not_object", "missing_text", "missing_label",
    "empty_text", "empty_label", "wrong_type", "text_too_long", "label_too_long", "id_too_long", "null_bytes",
    "invalid_ts", "unprocessable",
)
#: Why a record was skipped as already stored.
DUPLICATE_KINDS = ("position", "content")
#: How a training run ended: a candidate promoted or rejected by the gate, nothing to
#: train on (skipped), an error (failed) or a stop/operator cancellation (cancelled).
RUN_OUTCOMES = ("promoted", "rejected", "skipped", "failed", "cancelled")
#: What asked for a retrain.
TRIGGER_REASONS = ("schedule", "volume", "manual", "drift", "rebuild")
#: What a trigger did: started a run, joined the active one, was deferred by the minimum
#: gap between runs, or was refused (this daemon does not hold the training lease).
TRIGGER_RESULTS = ("started", "joined", "deferred", "refused")
#: The drift detectors (see daemon.training.drift, which keeps its own list equal).
DRIFT_DETECTORS = ("low_confidence", "label_mix", "embedding")
#: What a deletion removed, and why (an operator's forget request, or ingest.retention_days).
DELETED_KINDS = ("sample", "dead_letter", "prediction")
DELETION_CAUSES = ("forget", "retention")
#: PII entity types redaction replaces (see daemon.ingest.redaction, which keeps its own list equal).
PII_ENTITIES = ("email", "phone", "card", "iban", "ip")
#: Held-out evaluation sets (see daemon.training.evaluation).
EVAL_SETS = ("all", "recent", "old_labels", "new_labels")
#: Whose evaluation a quality gauge holds.
MODEL_ROLES = ("production", "candidate")
#: How production came to be: through the gate, forced by an operator, an operator
#: promoting a version the gate had approved, or a label change (rename, merge, retire)
#: applied to production's head.
PROMOTION_KINDS = ("gate", "forced", "operator", "relabel")
#: Label administration steps.
LABEL_CHANGES = ("rename", "merge", "retire")
#: How a predict request ended (HTTP 200, 503 no model, 4xx rejected input).
PREDICT_RESULTS = ("ok", "unavailable", "rejected")

_SECONDS_BUCKETS_TRAINING = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_SECONDS_BUCKETS_PREDICT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class MetricDoc:
    """One exported metric family, as documented in deploy/METRICS.md."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


class Metrics:
    """The daemon's metrics, registered on ``registry`` (a fresh one when omitted)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)

        self.records_consumed = Counter(
            "lifelong_ingest_records_consumed", "Records read from Kafka, valid or not.", registry=r
        )
        self.records_stored = Counter(
            "lifelong_ingest_records_stored", "Valid records stored as new samples.", registry=r
        )
        self.records_feedback = Counter(
            "lifelong_ingest_feedback_records",
            "Stored samples whose id matched a logged prediction: the label was joined to that answer.",
            registry=r,
        )
        self.records_superseded = Counter(
            "lifelong_ingest_superseded",
            "Stored samples replaced because their text arrived again with another label "
            "(ingest.relabeled_text: supersede).", registry=r,
        )
        self.topic_recreated = Counter(
            "lifelong_ingest_topic_recreated",
            "Times a topic came back with another broker topic id (deleted and created again, or a "
            "memory-only broker restarted empty): its new log is read from offset 0.",
            ["topic"], registry=r,
        )
        self.records_duplicate = Counter(
            "lifelong_ingest_records_duplicate",
            "Records skipped because they were already stored, by kind (position: same topic/partition/offset; "
            "content: same text and label).",
            ["kind"],
            registry=r,
        )
        self.dead_letters = Counter(
            "lifelong_ingest_dead_letters", "Records stored as dead letters, by reason code.", ["reason"], registry=r
        )
        self.store_failures = Counter(
            "lifelong_ingest_store_failures",
            "Ingest batches the database refused (locked, unwritable, gone); each is retried.",
            registry=r,
        )
        self.batch_duration = Histogram(
            "lifelong_ingest_batch_duration_seconds",
            "Time to validate and store one ingest batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "lifelong_ingest_consumer_lag_records",
            "Records in the partition not yet stored (fetch high-watermark minus stored position).",
            ["topic", "partition"],
            registry=r,
        )
        self.last_ingest_timestamp = Gauge(
            "lifelong_ingest_last_timestamp_seconds",
            "Unix time of the last batch that stored at least one record or dead letter.",
            registry=r,
        )
        self.broker_connected = Gauge(
            "lifelong_ingest_broker_connected", "1 while a broker answers the consumer (a Kafka request, not a bare TCP connect), else 0.", registry=r
        )
        self.broker_auth_failed = Gauge(
            "lifelong_ingest_broker_auth_failed",
            "1 while the broker refuses the client's authentication or TLS (SASL mechanism, credentials, "
            "certificates): retrying will not help until the settings are fixed.", registry=r
        )
        self.database_ok = Gauge(
            "lifelong_ingest_database_ok",
            "0 while ingest batches cannot be stored (database locked, unwritable or gone; offsets do not move), "
            "else 1.",
            registry=r,
        )
        self.ingest_failing = Gauge(
            "lifelong_ingest_failing",
            "1 while ingest steps keep failing unexpectedly (a bug or a record the checks do not foresee; the "
            "daemon reconnects from the stored offsets and retries with backoff), else 0.",
            registry=r,
        )
        self.samples_stored = Gauge(
            "lifelong_samples_stored", "Samples in the database, by split (train, held_out).", ["split"], registry=r
        )
        self.labels_stored = Gauge("lifelong_labels_stored", "Distinct labels in the database.", registry=r)

        # ---------------------------------------------------------------- training
        self.training_runs = Counter(
            "lifelong_training_runs", "Training runs finished, by outcome.", ["outcome"], registry=r
        )
        self.training_duration = Histogram(
            "lifelong_training_duration_seconds",
            "Wall time of a training run from start to its recorded end (snapshot, train, evaluate, decide).",
            buckets=_SECONDS_BUCKETS_TRAINING,
            registry=r,
        )
        self.training_examples_per_second = Gauge(
            "lifelong_training_examples_per_second",
            "Training throughput of the active run as last reported by the worker (of the last run when idle).",
            registry=r,
        )
        self.training_in_progress = Gauge(
            "lifelong_training_in_progress", "1 while a training run is active in this daemon, else 0.", registry=r
        )
        self.training_last_success_timestamp = Gauge(
            "lifelong_training_last_success_timestamp_seconds",
            "Unix time the last run ended with a decided candidate (promoted or rejected); 0 before the first.",
            registry=r,
        )
        self.training_triggers = Counter(
            "lifelong_training_triggers",
            "Retrain triggers, by reason and what they did (started, joined, deferred, refused).",
            ["reason", "result"],
            registry=r,
        )
        self.training_lease_held = Gauge(
            "lifelong_training_lease_held",
            "1 while this daemon holds the database training lease (only the holder trains), else 0.",
            registry=r,
        )
        self.training_schedule_interval = Gauge(
            "lifelong_training_schedule_interval_seconds",
            "Seconds between scheduled retrains (interval, or the gap between the cron schedule's next two times); "
            "0 when no schedule is configured. Alerts compare training age against it.",
            registry=r,
        )
        self.replay_buffer_size = Gauge(
            "lifelong_replay_buffer_samples", "Samples in the production model's replay buffer.", registry=r
        )

        # ---------------------------------------------------------------- model quality
        self.evaluation_accuracy = Gauge(
            "lifelong_evaluation_accuracy_ratio",
            "Held-out accuracy (0-1) of the production model and of the last candidate, by evaluation set.",
            ["model", "eval_set"],
            registry=r,
        )
        self.evaluation_macro_f1 = Gauge(
            "lifelong_evaluation_macro_f1_ratio",
            "Held-out macro-F1 (0-1) of the production model and of the last candidate, by evaluation set.",
            ["model", "eval_set"],
            registry=r,
        )
        self.candidate_forgetting = Gauge(
            "lifelong_candidate_forgetting_ratio",
            "Last candidate's drop in macro-F1 on old labels versus production (0-1; 0 when it did not drop).",
            registry=r,
        )
        self.candidate_negative_flip = Gauge(
            "lifelong_candidate_negative_flip_ratio",
            "Share of held-out samples production got right and the last candidate got wrong (0-1).",
            registry=r,
        )
        self.evaluation_abstain = Gauge(
            "lifelong_evaluation_abstain_ratio",
            "Share of in-scope held-out samples (set all) the model abstains on, at the last evaluation (0-1); "
            "the candidate's cross-fitted.",
            ["model"],
            registry=r,
        )
        self.evaluation_slice_accuracy = Gauge(
            "lifelong_evaluation_slice_accuracy_ratio",
            "Held-out accuracy (0-1) by group of each gate.slices key at the last evaluation, of the candidate and "
            "of production on the same samples; groups are the key's top gate.slice_top_n values and '(other)'.",
            ["model", "slice", "group"],
            registry=r,
        )
        self.evaluation_oos_auroc = Gauge(
            "lifelong_evaluation_out_of_scope_auroc",
            "AUROC of the last candidate's calibrated confidence, in-scope against out-of-scope held-out samples "
            "(evaluation.oos_label); 0 until such samples were scored.",
            registry=r,
        )

        # ---------------------------------------------------------------- registry
        self.promotions = Counter(
            "lifelong_promotions", "Versions made production, by kind (gate, forced, operator).", ["kind"],
            registry=r,
        )
        self.rollbacks = Counter("lifelong_rollbacks", "Rollbacks to the previous production version.", registry=r)
        self.promotion_events_failed = Counter(
            "lifelong_promotion_events_failed",
            "Promotion events that could not be published to <prefix>.promotions (production moved anyway).",
            registry=r,
        )
        self.model_info = Gauge(
            "lifelong_model_info",
            "1 for the version production serves (its name and training strategy in the labels); no series before "
            "the first promotion.",
            ["version", "strategy"],
            registry=r,
        )
        self.model_labels = Gauge(
            "lifelong_model_labels", "Labels the production model can predict.", registry=r
        )
        self.model_promoted_timestamp = Gauge(
            "lifelong_model_promoted_timestamp_seconds",
            "Unix time the serving production version became production; 0 before the first promotion.",
            registry=r,
        )

        # ---------------------------------------------------------------- serving
        self.predict_requests = Counter(
            "lifelong_predict_requests", "Predict requests, by result (ok, unavailable, rejected).", ["result"],
            registry=r,
        )
        self.predict_texts = Counter(
            "lifelong_predict_texts", "Texts classified by successful predict requests.", registry=r
        )
        self.predict_abstained = Counter(
            "lifelong_predict_abstained",
            "Texts the serving model abstained on (label null: confidence below its threshold).", registry=r
        )
        self.predictions_logged = Counter(
            "lifelong_prediction_log_stored", "Answers written to the prediction log.", registry=r
        )
        self.prediction_log_failures = Counter(
            "lifelong_prediction_log_failures",
            "Answers the prediction log could not write (database error); the predictions themselves succeeded.",
            registry=r,
        )
        self.prediction_log_dropped = Counter(
            "lifelong_prediction_log_dropped",
            "Answers not logged because the log's queue was full (the database is slower than the traffic).",
            registry=r,
        )
        self.predictions_pruned = Counter(
            "lifelong_prediction_log_pruned", "Logged answers deleted after serving.prediction_retention_days.",
            registry=r,
        )
        self.live_feedback = Gauge(
            "lifelong_live_feedback_samples",
            "Logged answers of the serving version whose true label has arrived (a labeled record with their id).",
            registry=r,
        )
        self.live_accuracy = Gauge(
            "lifelong_live_accuracy_ratio",
            "The serving version's accuracy on those answers (abstentions count as wrong); NaN before any.",
            registry=r,
        )
        self.drift_detected = Counter(
            "lifelong_drift_detected", "Drifts reported by each detector (each asks for a retrain).", ["detector"],
            registry=r,
        )
        self.drift_samples = Gauge(
            "lifelong_drift_samples",
            "Values each drift detector has seen since its last reset (below drift.min_samples: insufficient data).",
            ["detector"], registry=r,
        )
        self.drift_mean = Gauge(
            "lifelong_drift_mean",
            "Each drift detector's current estimate of its signal (share of served texts below the abstain "
            "threshold; label surprisal in nats; the embedding test's last p-value).",
            ["detector"], registry=r,
        )
        self.predict_latency = Histogram(
            "lifelong_predict_latency_seconds",
            "Time to classify one predict request's batch of texts (model time, excluding HTTP).",
            buckets=_SECONDS_BUCKETS_PREDICT,
            registry=r,
        )

        # ---------------------------------------------------------------- data governance
        self.data_deleted = Counter(
            "lifelong_data_deleted",
            "Rows deleted, by kind (sample, dead_letter, prediction) and cause (forget: an operator's request; "
            "retention: older than ingest.retention_days).",
            ["kind", "cause"], registry=r,
        )
        self.forget_requests = Counter(
            "lifelong_forget_requests", "Forget requests carried out (lifelong data forget, DELETE /v1/samples).",
            registry=r,
        )
        self.database_rows = Gauge(
            "lifelong_database_rows", "Rows in the tables retention shrinks (sample, dead_letter, prediction).",
            ["table"], registry=r,
        )
        self.database_bytes = Gauge(
            "lifelong_database_bytes",
            "Size of the database on disk (SQLite: the file and its WAL; PostgreSQL: pg_database_size).",
            registry=r,
        )
        self.production_forgotten = Gauge(
            "lifelong_production_forgotten_samples",
            "Forgotten training samples the serving version learned from; a rebuild (--retrain-clean) resets it.",
            registry=r,
        )
        self.label_changes = Counter(
            "lifelong_label_changes", "Label administration steps carried out (rename, merge, retire).", ["kind"],
            registry=r,
        )
        self.pii_redacted = Counter(
            "lifelong_pii_redacted", "PII spans replaced by a placeholder (ingest.redact_pii) before a sample, dead letter "
            "or logged prediction is stored, by entity type.",
            ["entity"], registry=r,
        )

        # ---------------------------------------------------------------- process
        self.build_info = Gauge(
            "lifelong_build_info", "Always 1; the label says which lifelong version this process runs.", ["version"],
            registry=r,
        )

        for kind in DELETED_KINDS:
            for cause in DELETION_CAUSES:
                self.data_deleted.labels(kind=kind, cause=cause)
        for kind in LABEL_CHANGES:
            self.label_changes.labels(kind=kind)
        for entity in PII_ENTITIES:
            self.pii_redacted.labels(entity=entity)
        for outcome in RUN_OUTCOMES:
            self.training_runs.labels(outcome=outcome)
        for reason in TRIGGER_REASONS:
            for result in TRIGGER_RESULTS:
                self.training_triggers.labels(reason=reason, result=result)
        for kind in PROMOTION_KINDS:
            self.promotions.labels(kind=kind)
        for result in PREDICT_RESULTS:
            self.predict_requests.labels(result=result)
        for kind in DUPLICATE_KINDS:
            self.records_duplicate.labels(kind=kind)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason=reason)
        for split in ("train", "held_out"):
            self.samples_stored.labels(split=split)
        for detector in DRIFT_DETECTORS:
            self.drift_detected.labels(detector=detector)
            self.drift_samples.labels(detector=detector)

        self.training_last_success_timestamp.set(0)
        self.database_ok.set(1)

    # ------------------------------------------------------------------ composite updates
    # The daemon reports events in its own terms; how they map onto series lives here,
    # next to the definitions, so every writer of a metric is easy to find.

    def record_evaluation(self, summary: Mapping[str, Any]) -> None:
        """A candidate was evaluated (``EvaluationOutcome.summary()``): candidate and production quality.

        The candidate series are replaced, not updated: a set this candidate was not
        scored on (e.g. no new labels) must not keep the previous candidate's value.
        """
        for name in EVAL_SETS:
            for gauge in (self.evaluation_accuracy, self.evaluation_macro_f1):
                try:
                    gauge.remove("candidate", name)
                except KeyError:
                    pass
        self.candidate_forgetting.set(0)
        self._set_quality("candidate", summary.get("candidate"))
        production = summary.get("production")
        if production:
            self._set_quality("production", production)
            old_candidate = (summary.get("candidate") or {}).get("old_labels") or {}
            old_production = production.get("old_labels") or {}
            if old_candidate.get("n") and old_production.get("n"):
                drop = float(old_production["macro_f1"]) - float(old_candidate["macro_f1"])
                self.candidate_forgetting.set(max(0.0, drop))
        flip = summary.get("negative_flip_rate")
        self.candidate_negative_flip.set(float(flip) if flip is not None else 0.0)
        abstain = summary.get("abstain") or {}
        for role in MODEL_ROLES:
            measured = abstain.get(role)
            if measured:
                self.evaluation_abstain.labels(model=role).set(float(measured["rate"]))
            else:
                try:
                    self.evaluation_abstain.remove(role)
                except KeyError:
                    pass
        area = (summary.get("out_of_scope") or {}).get("auroc")
        if area is not None:
            self.evaluation_oos_auroc.set(float(area))
        # Replaced whole: the top groups can change between evaluations, and a group no
        # longer among them must not keep its old value (cardinality stays bounded).
        self.evaluation_slice_accuracy.clear()
        for key, outcome in (summary.get("slices") or {}).items():
            for group, measured in outcome.get("groups", {}).items():
                for role in MODEL_ROLES:
                    accuracy = measured.get(f"{role}_accuracy")
                    if accuracy is not None:
                        self.evaluation_slice_accuracy.labels(model=role, slice=key, group=group).set(float(accuracy))

    def count_deletion(self, report: Any, *, cause: str) -> None:
        """Count what a ``storage.deletion.DeletionReport`` removed."""
        for kind, n in (("sample", report.samples), ("dead_letter", report.dead_letters),
                        ("prediction", report.predictions)):
            if n:
                self.data_deleted.labels(kind=kind, cause=cause).inc(n)

    def set_live_accuracy(self, joined: int, accuracy: float | None) -> None:
        """The serving version's live accuracy, from the prediction log's joins."""
        self.live_feedback.set(joined)
        self.live_accuracy.set(accuracy if accuracy is not None else float("nan"))

    def set_production(self, version: str, *, strategy: str, labels: int, buffer_samples: int,
                       promoted_at: float | None, sets: Mapping[str, Any] | None) -> None:
        """Production is now ``version``; ``sets`` is its evaluation from when it was a candidate."""
        self.model_info.clear()
        self.model_info.labels(version=version, strategy=strategy).set(1)
        self.model_labels.set(labels)
        self.replay_buffer_size.set(buffer_samples)
        self.model_promoted_timestamp.set(promoted_at or 0)
        if sets:
            self._set_quality("production", sets)

    def count_production_change(self, *, outcome: str, actor: str) -> None:
        """A promotion decision moved production (outcome as stored: promoted, forced, rolled_back)."""
        if outcome == "rolled_back":
            self.rollbacks.inc()
        elif outcome == "forced":
            self.promotions.labels(kind="forced").inc()
        elif outcome == "promoted":
            self.promotions.labels(kind="gate" if actor == "gate" else "operator").inc()
        elif outcome == "relabeled":
            self.promotions.labels(kind="relabel").inc()

    def observe_run(self, *, status: str, outcome: str | None, seconds: float, finished_at: float) -> None:
        """A training run ended (status and outcome as recorded on the run)."""
        label = outcome if status == "succeeded" and outcome in RUN_OUTCOMES else status
        if label not in RUN_OUTCOMES:
            label = "failed"
        self.training_runs.labels(outcome=label).inc()
        self.training_duration.observe(seconds)
        if status == "succeeded":
            self.training_last_success_timestamp.set(finished_at)

    def _set_quality(self, model: str, sets: Mapping[str, Any] | None) -> None:
        for name, values in (sets or {}).items():
            if name in EVAL_SETS and values.get("n"):
                self.evaluation_accuracy.labels(model=model, eval_set=name).set(float(values["accuracy"]))
                self.evaluation_macro_f1.labels(model=model, eval_set=name).set(float(values["macro_f1"]))


def catalog(metrics: Metrics | None = None) -> Iterator[MetricDoc]:
    """Every metric family the daemon defines (process_* from the client library excluded).

    deploy/METRICS.md is generated from this (``python -m daemon.metrics``) and a test
    checks that the file matches, so the documentation cannot drift from the code.
    """
    metrics = metrics or Metrics()
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        # Label names come from the wrapper itself: a family with no samples yet (e.g.
        # lifelong_model_info before a promotion) still documents its labels.
        labels = tuple(collector._labelnames)  # noqa: SLF001 - no public accessor in prometheus-client
        for family in collector.describe():
            suffix = "_total" if family.type == "counter" else ""
            yield MetricDoc(name=family.name + suffix, type=family.type, labels=labels, help=family.documentation)


def render_markdown(metrics: Metrics | None = None) -> str:
    """deploy/METRICS.md: one table row per metric family."""
    docs = sorted(catalog(metrics), key=lambda d: d.name)
    lines = [
        "# lifelong metrics",
        "",
        "Generated from `daemon/metrics.py` by `python -m daemon.metrics > deploy/METRICS.md`;",
        "`tests/unit/daemon/test_metrics_catalog.py` fails when this file and the code differ.",
        "Every metric is exported by `GET /metrics` on the daemon's API port (no token).",
        "Counters with labels export 0 for every known label value from the start.",
        "Histograms also export `_bucket`, `_sum` and `_count` series.",
        "The standard `process_*` metrics of prometheus-client are exported too.",
        "",
        "| Metric | Type | Labels | Meaning |",
        "|---|---|---|---|",
    ]
    for doc in docs:
        labels = ", ".join(f"`{label}`" for label in doc.labels) or "-"
        lines.append(f"| `{doc.name}` | {doc.type} | {labels} | {doc.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - exercised through the catalog test
    import sys

    sys.stdout.write(render_markdown())
