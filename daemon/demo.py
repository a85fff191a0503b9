"""``lifelong demo``: the whole daemon on embedded defaults, fed a sample dataset in stages.

Each stage brings labels the daemon has not seen; the demo waits until everything
sent is stored and reports what arrived. Training, evaluation and promotion join
the stages as those capabilities land (issues #3-#5).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from daemon.config import Settings
from daemon.produce import produce_values, read_values
from daemon.runtime import Daemon
from storage.ingest_store import load_offsets
from storage.stats import IngestSummary, ingest_summary

__all__ = ["DemoStage", "bundled_sample", "plan_stages", "run_demo"]

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


def run_demo(
    settings: Settings,
    *,
    data: Path | None,
    stages: int,
    include_bad_records: bool,
    report: Callable[[str, IngestSummary, dict[str, object]], None],
    timeout_s: float = 120.0,
) -> IngestSummary:
    """Start a daemon, stream ``data`` in ``stages`` and call ``report`` after each stage."""
    planned = plan_stages(data or bundled_sample(), stages)
    if include_bad_records:
        bad = list(read_values(_bundled_bad_records()))
        planned[0] = DemoStage(planned[0].name, planned[0].labels, bad + planned[0].values)
    daemon = Daemon(settings).start()
    try:
        kafka = daemon.settings.kafka
        sent_total = 0
        summary: IngestSummary | None = None
        for stage in planned:
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
            report(
                stage.name,
                summary,
                {
                    "sent": len(stage.values),
                    "new_labels": stage.labels,
                    "seconds": round(time.monotonic() - started, 2),
                    "api": daemon.api_url,
                },
            )
        if summary is None:  # pragma: no cover - plan_stages returns at least one stage
            raise RuntimeError("no stages")
        return summary
    finally:
        daemon.stop()
