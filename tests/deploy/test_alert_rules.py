"""The alert rules and Prometheus config in deploy/prometheus are valid, tested and actionable.

An alert is only as good as its weakest link: PromQL that does not parse, a metric the
daemon stopped exporting (the rule then silently never fires), a template that breaks
at fire time, or a runbook link to nothing at 3 a.m. Each of those is checked here,
with promtool (syntax and the unit tests in alerts_test.yml) and with a real Prometheus
server that loads and evaluates the rule file.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.prometheus_server import PrometheusServer, exported_metric_names, metric_names, promtool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RUNBOOK = DEPLOY / "RUNBOOK.md"

REQUIRED_ALERTS = {
    "LifelongDown",
    "LifelongNoSuccessfulTraining",
    "LifelongTrainingFailures",
    "LifelongConsumerLagHigh",
    "LifelongDeadLetterSpike",
    "LifelongProductionQualityLow",
    "LifelongProductionQualityFalling",
    "LifelongGateRejectingEverything",
}
SEVERITIES = {"critical", "warning", "info"}


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (lower case, punctuation dropped, spaces to hyphens)."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _runbook_anchors() -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", RUNBOOK.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {_github_anchor(heading) for heading in headings}


# ---------------------------------------------------------------------- promtool


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", ALERTS_TEST)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    # As shipped, rule_files names the container path; --syntax-only checks it without it.
    result = promtool("check", "config", "--syntax-only", PROMETHEUS_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    # Fully (rule files included), with rule_files pointed at this checkout's alerts.yml.
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["rule_files"] = [str(ALERTS)]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = promtool("check", "config", copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


# ---------------------------------------------------------------------- the config
# (How compose mounts it and whether lifelong:8765 is the daemon: tests/deploy/test_compose.py.)


def test_prometheus_config_scrapes_the_daemon_and_loads_the_alerts() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "lifelong"]
    assert job["metrics_path"] == "/metrics"
    assert job["scrape_interval"] == "15s"
    assert [target for static in job["static_configs"] for target in static["targets"]] == ["lifelong:8765"]


# ---------------------------------------------------------------------- the rules themselves


def test_every_required_alert_exists() -> None:
    names = [rule["alert"] for rule in _alert_rules()]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert REQUIRED_ALERTS <= set(names), f"missing: {sorted(REQUIRED_ALERTS - set(names))}"


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_is_documented_and_links_to_its_runbook_section(rule: dict[str, Any]) -> None:
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{rule['alert']} has no {key}"
    url = annotations["runbook_url"]
    match = re.fullmatch(r"deploy/RUNBOOK\.md#([a-z0-9-]+)", url)
    assert match, f"{rule['alert']}: runbook_url {url!r} is not deploy/RUNBOOK.md#<anchor>"
    assert match.group(1) == rule["alert"].lower(), "the anchor is the alert's name in lower case"
    assert match.group(1) in _runbook_anchors(), f"RUNBOOK.md has no heading for #{match.group(1)}"


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_reads_only_metrics_the_daemon_exports(rule: dict[str, Any]) -> None:
    exported = exported_metric_names()
    expr = rule["expr"]
    used = metric_names(expr) | set(re.findall(r"\blifelong_[a-z0-9_]+", expr))
    assert used, f"{rule['alert']}: no metric found in {expr!r}"
    assert used <= exported, f"{rule['alert']} reads metrics the daemon does not export: {sorted(used - exported)}"


def test_every_alert_has_a_unit_test_that_fires_and_one_that_stays_quiet() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in _alert_rules():
        name = rule["alert"]
        mine = [case for case in cases if case["alertname"] == name]
        firing = [alert for case in mine for alert in case.get("exp_alerts") or []]
        assert firing, f"no unit test makes {name} fire"
        assert any(not case.get("exp_alerts") for case in mine), f"no unit test checks that {name} stays quiet"
        for alert in firing:
            assert alert["exp_labels"].get("severity") == rule["labels"]["severity"], name
            assert alert["exp_annotations"].get("summary"), f"{name}: a firing case does not check the summary"


# ---------------------------------------------------------------------- a real server


def test_prometheus_loads_and_evaluates_every_rule(tmp_path: Path) -> None:
    config = {"global": {"evaluation_interval": "1s"}, "rule_files": [str(ALERTS)]}
    expected = {rule["alert"] for rule in _alert_rules()}
    with PrometheusServer(config, tmp_path) as server:
        deadline = time.monotonic() + 60
        rules: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            groups = server.get("/api/v1/rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            if rules and all(rule.get("health") != "unknown" for rule in rules):
                break
            time.sleep(0.2)
        assert {rule["name"] for rule in rules} == expected
        broken = {rule["name"]: rule.get("lastError") for rule in rules if rule.get("health") != "ok"}
        assert not broken, f"rules that failed to evaluate: {broken}"
