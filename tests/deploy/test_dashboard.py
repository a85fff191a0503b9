"""The Grafana dashboard and its provisioning work as shipped.

Grafana accepts a dashboard with broken queries and shows "No data", which looks the
same as a quiet daemon. So beyond the JSON's shape (stable uid, unique panel ids, the
provisioned datasource), every query is checked against the daemon's metric catalog
and sent, with Grafana's variables filled in, to a real Prometheus: a syntax error is
a 400 there. The alert expressions go through the same server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.prometheus_server import PrometheusServer, exported_metric_names, metric_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "lifelong.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "lifelong.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

DATASOURCE_UID = "lifelong-prometheus"
DASHBOARD_UID = "lifelong-overview"

#: What a Grafana variable stands for when a query is sent to Prometheus directly.
GRAFANA_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "instance": ".*",
}

#: Panels the dashboard must have: (what, metrics one panel must read together,
#: words that must appear in that panel's queries or legends, panel type or None).
REQUIRED_PANELS: list[tuple[str, set[str], set[str], str | None]] = [
    ("ingest rate, consumed vs stored",
     {"lifelong_ingest_records_consumed_total", "lifelong_ingest_records_stored_total"}, {"rate("}, "timeseries"),
    ("dead letters by reason", {"lifelong_ingest_dead_letters_total"}, {"reason"}, "timeseries"),
    ("consumer lag by partition", {"lifelong_ingest_consumer_lag_records"}, {"partition"}, "timeseries"),
    ("samples by split, and labels", {"lifelong_samples_stored", "lifelong_labels_stored"}, {"split"}, "timeseries"),
    ("replay buffer size", {"lifelong_replay_buffer_samples"}, set(), "timeseries"),
    ("training runs by outcome", {"lifelong_training_runs_total"}, {"outcome"}, "timeseries"),
    ("training duration", {"lifelong_training_duration_seconds_bucket", "lifelong_training_duration_seconds_sum",
                           "lifelong_training_duration_seconds_count"}, {"histogram_quantile"}, "timeseries"),
    ("training examples/s", {"lifelong_training_examples_per_second"}, set(), "timeseries"),
    ("accuracy by eval set", {"lifelong_evaluation_accuracy_ratio"}, {"model", "eval_set"}, "timeseries"),
    ("macro-F1 by eval set", {"lifelong_evaluation_macro_f1_ratio"}, {"model", "eval_set"}, "timeseries"),
    ("forgetting and negative flips",
     {"lifelong_candidate_forgetting_ratio", "lifelong_candidate_negative_flip_ratio"}, set(), "timeseries"),
    ("promotions by kind, and rollbacks", {"lifelong_promotions_total", "lifelong_rollbacks_total"}, {"kind"},
     "timeseries"),
    ("triggers by reason and result", {"lifelong_training_triggers_total"}, {"reason", "result"}, "timeseries"),
    ("predict request rate", {"lifelong_predict_requests_total"}, {"rate(", "result"}, "timeseries"),
    ("predict latency p50/p99", {"lifelong_predict_latency_seconds_bucket"}, {"0.5,", "0.99,"}, "timeseries"),
    ("production model version", {"lifelong_model_info"}, {"version"}, "stat"),
    ("training in progress, lease held", {"lifelong_training_in_progress", "lifelong_training_lease_held"}, set(),
     "stat"),
]


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and annotation query."""
    dashboard = _dashboard()
    queries = [(f"panel {panel['id']} {panel['title']!r} target {target['refId']}", target["expr"])
               for panel in _panels(dashboard) for target in panel.get("targets", [])]
    queries += [(f"annotation {annotation['name']!r}", annotation["expr"])
                for annotation in dashboard.get("annotations", {}).get("list", []) if "expr" in annotation]
    return queries


def _alert_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in groups for rule in group["rules"]]


def _interpolate(expr: str) -> str:
    """``expr`` as Grafana sends it: ``$name``/``${name}`` variables replaced (longest name first)."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", GRAFANA_VARIABLES[name]).replace("$" + name, GRAFANA_VARIABLES[name])
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


# ---------------------------------------------------------------------- the JSON


def test_dashboard_identity_is_stable() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == DASHBOARD_UID
    assert dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert "id" not in dashboard or dashboard["id"] is None, "a provisioned dashboard must not pin a database id"


def test_every_panel_is_complete_and_ids_are_unique() -> None:
    panels = list(_panels(_dashboard()))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    for panel in panels:
        where = f"panel {panel.get('id')}"
        assert panel["type"] in {"timeseries", "stat", "table"}, where
        assert panel.get("title"), where
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= grid.keys() and grid["x"] + grid["w"] <= 24, where
        assert panel["targets"], f"{where} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{where} target {target.get('refId')} has no expr"


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], int] = {}
    for panel in _panels(_dashboard()):
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap at {(x, y)}"
                cells[(x, y)] = panel["id"]


def test_every_query_uses_the_provisioned_datasource() -> None:
    dashboard = _dashboard()
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert [source["uid"] for source in provisioned] == [DATASOURCE_UID]
    expected = {"type": "prometheus", "uid": DATASOURCE_UID}
    for panel in _panels(dashboard):
        assert panel["datasource"] == expected, f"panel {panel['id']}"
        for target in panel["targets"]:
            assert target.get("datasource", expected) == expected, f"panel {panel['id']} {target['refId']}"
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == expected
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            assert variable["datasource"] == expected


@pytest.mark.parametrize(("where", "expr"), _dashboard_queries(), ids=lambda value: value[:60])
def test_dashboard_query_reads_only_metrics_the_daemon_exports(where: str, expr: str) -> None:
    exported = exported_metric_names()
    used = metric_names(_interpolate(expr)) | set(re.findall(r"\blifelong_[a-z0-9_]+", expr))
    assert used, f"{where}: no metric in {expr!r}"
    assert used <= exported, f"{where} reads metrics the daemon does not export: {sorted(used - exported)}"


def test_variable_queries_read_exported_metrics() -> None:
    exported = exported_metric_names()
    for variable in _dashboard().get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        definition = variable["definition"]
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", definition)
        assert match, f"variable {variable['name']}: unexpected query {definition!r}"
        assert match.group(1) in exported, definition
        assert variable["name"] in GRAFANA_VARIABLES, f"the tests do not know how to fill ${variable['name']}"


@pytest.mark.parametrize(("what", "metrics", "words", "kind"), REQUIRED_PANELS, ids=[p[0] for p in REQUIRED_PANELS])
def test_required_panel_is_present(what: str, metrics: set[str], words: set[str], kind: str | None) -> None:
    for panel in _panels(_dashboard()):
        text = " ".join(f"{target['expr']} {target.get('legendFormat', '')}" for target in panel["targets"])
        used = set().union(*(metric_names(_interpolate(target["expr"])) for target in panel["targets"]))
        if metrics <= used and all(word in text for word in words) and kind in (None, panel["type"]):
            return
    pytest.fail(f"no {kind or ''} panel shows {what}: reading {sorted(metrics)} with {sorted(words)}")


# ---------------------------------------------------------------------- provisioning
# (Where compose mounts these files: tests/deploy/test_compose.py.)


def test_datasource_provisioning_points_at_the_compose_prometheus() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    assert provisioned["apiVersion"] == 1
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == DATASOURCE_UID
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"


def test_dashboard_provider_loads_the_mounted_dashboards() -> None:
    provisioned = yaml.safe_load(DASHBOARD_PROVIDERS.read_text(encoding="utf-8"))
    assert provisioned["apiVersion"] == 1
    (provider,) = provisioned["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# ---------------------------------------------------------------------- a real Prometheus


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with PrometheusServer({"global": {"scrape_interval": "15s"}}, tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@pytest.mark.parametrize(("where", "expr"), _dashboard_queries() + _alert_queries(), ids=lambda value: value[:60])
def test_prometheus_accepts_the_query(prometheus: PrometheusServer, where: str, expr: str) -> None:
    status, body = prometheus.query(_interpolate(expr))
    assert status == 200 and body.get("status") == "success", f"{where}: {body.get('error', body)}"


def test_prometheus_rejects_a_broken_query(prometheus: PrometheusServer) -> None:
    """The check above means something: a syntax error is refused."""
    status, body = prometheus.query("sum by (reason (rate(lifelong_ingest_dead_letters_total[5m]))")
    assert status == 400 and body["status"] == "error"
