"""``lifelong demo``: the whole daemon on embedded defaults, fed a sample dataset in stages.

Each stage brings labels the daemon has not seen. The demo waits until everything
sent is stored, asks the daemon to retrain (the same single-flight path as
``POST /v1/retrain``), and reports what arrived, the candidate's and production's
held-out metrics, and the gate's decision with its reasons.

Beside it the demo fine-tunes a ``naive`` model the way a plain training script
would (each stage from the last, on the new stage's data only) and scores both the
served model and that naive one on the same held-out samples of every label seen so
far: the naive line falls stage after stage as it forgets, the served model's holds.
That contrast is what lifelong is for.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from daemon.config import Settings
from daemon.ingest.produce import produce_values, read_values
from daemon.runtime import Daemon
from storage.ingest_store import load_offsets
from storage.stats import IngestSummary, ingest_summary

__all__ = ["DemoStage", "bundled_sample", "plan_stages", "run_demo", "write_demo_report"]

logger = logging.getLogger(__name__)


def bundled_sample() -> Path:
    """The CLINC150 sample shipped with the package."""
    return Path(str(files("daemon") / "data" / "clinc150_sample.jsonl"))


def _bundled_bad_records() -> Path:
    return Path(str(files("daemon") / "data" / "bad_records.jsonl"))


@dataclass(frozen=True)
class DemoStage:
    name: str
    labels: list[str]
    values: list[bytes]


def plan_stages(path: Path, stages: int) -> list[DemoStage]:
    """Split a dataset into ``stages`` groups of labels, in order of first appearance.

    Records that are not valid JSON objects with a ``label`` go to the first stage so
    they still reach the daemon (and its dead-letter store).
    """
    if stages < 1:
        raise ValueError(f"stages must be at least 1, got {stages}")
    order: list[str] = []
    by_label: dict[str, list[bytes]] = {}
    unlabeled: list[bytes] = []
    for value in read_values(path):
        try:
            label = json.loads(value).get("label")
        except (ValueError, AttributeError):
            label = None
        if not isinstance(label, str):
            unlabeled.append(value)
            continue
        if label not in by_label:
            order.append(label)
            by_label[label] = []
        by_label[label].append(value)
    stages = min(stages, max(1, len(order)))
    per_stage = -(-len(order) // stages) if order else 0
    planned = []
    for index in range(stages):
        labels = order[index * per_stage : (index + 1) * per_stage]
        values = [v for label in labels for v in by_label[label]]
        if index == 0:
            values = unlabeled + values
        planned.append(DemoStage(name=f"stage {index + 1}", labels=labels, values=values))
    return planned


def _wait_until_stored(daemon: Daemon, expected: int, timeout_s: float) -> Engine:
    engine = daemon.engine
    if engine is None:
        raise RuntimeError("daemon not started")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with Session(engine) as session:
            if sum(load_offsets(session, topics=daemon.settings.kafka.topics).values()) >= expected:
                return engine
        time.sleep(0.1)
    raise TimeoutError(f"ingestion did not catch up with {expected} records within {timeout_s:.0f}s")


def _retrain(daemon: Daemon) -> dict[str, object]:
    """Run one retrain cycle to its end and describe it."""
    from daemon.control.views import model_view, run_view
    from storage import registry

    ticket = daemon.triggers.fire("manual", requested_by="demo")
    if ticket.run_id is None:
        raise RuntimeError(f"the demo's retrain was refused: {ticket.detail}")
    daemon.coordinator.wait()
    engine = daemon.engine
    if engine is None:  # pragma: no cover - the daemon is started
        raise RuntimeError("daemon not started")
    with Session(engine) as session:
        run = registry.get_run(session, ticket.run_id)
        described = run_view(run) if run else {}
        version = registry.get_version(session, run.candidate_version) if run and run.candidate_version else None
        model = model_view(session, version, detail=True) if version else None
    gate = (model or {}).get("evaluation", {}).get("gate") if model else None
    return {"run": described, "candidate": (model or {}).get("evaluation"), "gate": gate,
            "production": daemon.predictor.version}


class _NaiveBaseline:
    """Plain fine-tuning stage by stage on new data only, scored beside the served model."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.parent: Path | None = None
        self.after_id = 0

    def step(self, daemon: Daemon, stage: int) -> dict[str, float | None]:
        from learners.buffer import BufferConfig
        from learners.data import Example
        from learners.inference import predict
        from learners.model import load_classifier
        from learners.train import TrainingSpec, train_candidate
        from storage.samples import heldout_examples, training_examples

        engine = daemon.engine
        if engine is None:  # pragma: no cover - the daemon is started
            raise RuntimeError("daemon not started")
        with Session(engine) as session:
            new = [Example(*row[:3]) for row in training_examples(session, after_id=self.after_id)]
            heldout = heldout_examples(session)
        if new:
            self.after_id = max(e.sample_id for e in new)
            training = self.settings.training
            result = train_candidate(TrainingSpec(
                output_dir=self.root / f"naive-{stage}", train=new, buffer=BufferConfig(size=0),
                strategy=training.strategy.model_copy(update={"name": "naive"}), parent_dir=self.parent,
                base_model=training.base_model, torch_threads=training.torch_threads, adapter=training.adapter))
            if result.output_dir is not None:
                self.parent = Path(result.output_dir)
        texts, truth = [e.text for e in heldout], [e.label for e in heldout]
        scores: dict[str, float | None] = {"naive": None, "served": None}
        if self.parent is not None and texts:
            got = predict(load_classifier(self.parent), texts).predicted_labels
            scores["naive"] = sum(g == t for g, t in zip(got, truth, strict=True)) / len(texts)
        if daemon.predictor.version is not None and texts:
            got = daemon.predictor.predict(texts).top_labels  # as naive: every text gets its top label
            scores["served"] = sum(g == t for g, t in zip(got, truth, strict=True)) / len(texts)
        return scores


def run_demo(
    settings: Settings,
    *,
    data: Path | None,
    stages: int,
    include_bad_records: bool,
    report: Callable[[str, IngestSummary, dict[str, object]], None],
    train: bool = True,
    baseline: bool = True,
    timeout_s: float = 120.0,
) -> IngestSummary:
    """Start a daemon, stream ``data`` in ``stages``, retrain after each, call ``report``.

    With ``baseline`` (and ``train``), each stage also reports ``held_out_accuracy``: the
    served model's and a naive fine-tuned model's accuracy on every held-out sample so far.
    """
    planned = plan_stages(data or bundled_sample(), stages)
    if include_bad_records:
        bad = list(read_values(_bundled_bad_records()))
        planned[0] = DemoStage(planned[0].name, planned[0].labels, bad + planned[0].values)
    daemon = Daemon(settings).start()
    naive = _NaiveBaseline(settings, settings.data_dir / "demo-naive") if train and baseline else None
    try:
        kafka = daemon.settings.kafka
        sent_total = 0
        summary: IngestSummary | None = None
        for number, stage in enumerate(planned, start=1):
            started = time.monotonic()
            sent_total += produce_values(
                iter(stage.values),
                bootstrap_servers=kafka.bootstrap_servers or [],
                topic=kafka.topics[0],
                client_options=kafka.client_security_options(),
            )
            engine = _wait_until_stored(daemon, sent_total, timeout_s)
            with Session(engine) as session:
                summary = ingest_summary(session)
            info: dict[str, object] = {"sent": len(stage.values), "new_labels": stage.labels, "api": daemon.api_url}
            if train:
                info["retrain"] = _retrain(daemon)
            if naive is not None:
                info["held_out_accuracy"] = naive.step(daemon, number)
            info["seconds"] = round(time.monotonic() - started, 2)
            report(stage.name, summary, info)
        if summary is None:  # pragma: no cover - plan_stages returns at least one stage
            raise RuntimeError("no stages")
        return summary
    finally:
        daemon.stop()
        if naive is not None:
            shutil.rmtree(naive.root, ignore_errors=True)


def _all_set(retrained: dict[str, Any] | None, side: str) -> dict[str, Any]:
    evaluation = (retrained or {}).get("candidate") or {}
    return (evaluation.get(side) or {}).get("all") or {}


def write_demo_report(workdir: Path, stages: list[dict[str, Any]]) -> Path:
    """A markdown summary of the stages and a PNG of held-out accuracy per stage."""
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# lifelong demo",
        "",
        "| stage | new labels | samples (train / held-out) | candidate | accuracy | macro-F1 | production before "
        "| outcome | serving | served model, all held-out | naive fine-tuning | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    accuracy: list[float | None] = []
    served: list[float | None] = []
    naive: list[float | None] = []
    for row in stages:
        retrained = row.get("retrain") or {}
        run = retrained.get("run") or {}
        cand, prod = _all_set(retrained, "candidate"), _all_set(retrained, "production")
        held = row.get("held_out_accuracy") or {}
        samples = row["status"]["samples"]
        lines.append(
            f"| {row['stage']} | {len(row['new_labels'])} | {samples['train']} / {samples['held_out']} "
            f"| {run.get('candidate_version') or '-'} | {cand.get('accuracy', float('nan')):.3f} "
            f"| {cand.get('macro_f1', float('nan')):.3f} | {prod.get('accuracy', float('nan')):.3f} "
            f"| {run.get('outcome') or run.get('status') or 'not trained'} | {retrained.get('production') or '-'} "
            f"| {_fmt(held.get('served'))} | {_fmt(held.get('naive'))} | {row['seconds']} |"
        )
        accuracy.append(cand.get("accuracy"))
        served.append(held.get("served"))
        naive.append(held.get("naive"))
        checks = ((retrained.get("gate") or {}).get("checks")) or []
        if checks:
            lines.append("| | " + "<br>".join(("ok " if c["passed"] else "FAIL ") + c["detail"] for c in checks)
                         + " | | | | | | | | | | |")
    path = workdir / "demo-report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _chart(path.with_suffix(".png"), [row["stage"] for row in stages],
           {"candidate, all held-out labels": accuracy, "served model, all held-out labels": served,
            "naive fine-tuning (no replay), same samples": naive})
    return path


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _chart(path: Path, stages: list[str], lines: dict[str, list[float | None]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for (label, values), style in zip(lines.items(), ("o:", "o-", "s--"), strict=False):
        points = [(i, a) for i, a in enumerate(values) if a is not None]
        if points:
            axis.plot([i for i, _ in points], [a for _, a in points], style, label=label)
    axis.set_xticks(range(len(stages)), stages)
    axis.set_ylim(0, 1)
    axis.set_ylabel("held-out accuracy")
    axis.set_title("lifelong demo: accuracy per stage")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
