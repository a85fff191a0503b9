"""deploy/METRICS.md documents exactly what daemon/metrics.py defines, and names follow convention."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest

from daemon.metrics import Metrics, catalog, render_markdown

METRICS_MD = Path(__file__).resolve().parents[3] / "deploy" / "METRICS.md"


def test_metrics_md_is_generated_from_the_code() -> None:
    assert METRICS_MD.read_text(encoding="utf-8") == render_markdown(), (
        "deploy/METRICS.md is stale: run `python -m daemon.metrics > deploy/METRICS.md`"
    )


def test_every_metric_follows_prometheus_naming() -> None:
    docs = list(catalog())
    assert len(docs) >= 30
    for doc in docs:
        assert re.fullmatch(r"lifelong_[a-z0-9_]+", doc.name), doc.name
        assert doc.help and doc.help.endswith((".", ")")), doc.name
        if doc.type == "counter":
            assert doc.name.endswith("_total"), doc.name
        else:
            assert not doc.name.endswith("_total"), doc.name
        if doc.type == "histogram":
            assert doc.name.endswith("_seconds"), doc.name
        for forbidden in ("text", "id", "sample"):
            assert forbidden not in doc.labels, f"{doc.name} has a high-cardinality label {forbidden}"


def test_labelled_counters_export_zero_for_every_known_value_before_any_event() -> None:
    exposition = generate_latest(Metrics().registry).decode()
    for series in ('lifelong_training_runs_total{outcome="failed"} 0.0',
                   'lifelong_training_triggers_total{reason="volume",result="deferred"} 0.0',
                   'lifelong_promotions_total{kind="forced"} 0.0',
                   'lifelong_predict_requests_total{result="unavailable"} 0.0',
                   'lifelong_ingest_dead_letters_total{reason="not_json"} 0.0'):
        assert series in exposition
