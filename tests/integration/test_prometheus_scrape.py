"""A real Prometheus scrapes a running daemon and sees what it stored.

The alert and dashboard tests prove that the queries are valid and name exported
metrics; this one proves the last link: the daemon's /metrics, served by the daemon
as it runs in production, parses for Prometheus (text format, no duplicate series,
no token needed), and the numbers that arrive are the records it actually stored and
dead-lettered. No training is involved.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from daemon.ingest.broker import EmbeddedBroker
from daemon.runtime import Daemon
from tests.conftest import produce, record, settings_for, wait_for
from tests.deploy.prometheus_server import PrometheusServer

VALID = 25
BAD = 3
TIMEOUT_S = 60.0


@pytest.fixture
def daemon(broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(settings_for(broker, topic, sqlite_url, tmp_path / "daemon")).start()
    try:
        yield running
    finally:
        running.stop()


def _scalar(server: PrometheusServer, expr: str) -> float | None:
    """The value of a query returning one series, or None while it returns none."""
    status, body = server.query(expr)
    assert status == 200 and body["status"] == "success", body
    result = body["data"]["result"]
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def _wait_for_value(server: PrometheusServer, expr: str, expected: float) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    seen: float | None = None
    while time.monotonic() < deadline:
        seen = _scalar(server, expr)
        if seen == expected:
            return
        time.sleep(0.5)
    raise AssertionError(f"{expr} was {seen} after {TIMEOUT_S:.0f}s, expected {expected}")


def test_prometheus_scrapes_the_stored_and_dead_lettered_counts(
    daemon: Daemon, broker: EmbeddedBroker, topic: str, tmp_path: Path
) -> None:
    values = [record(f"scraped sample number {i}", f"label{i % 3}") for i in range(VALID)] + [b"not json"] * BAD
    produce(broker.bootstrap_servers, topic, values)
    registry = daemon.metrics.registry
    wait_for(lambda: (registry.get_sample_value("lifelong_ingest_records_stored_total") or 0) >= VALID
             and (registry.get_sample_value("lifelong_ingest_dead_letters_total", {"reason": "not_json"}) or 0) >= BAD,
             timeout_s=TIMEOUT_S, what=f"{VALID} records stored and {BAD} dead-lettered")

    assert daemon.api_url is not None
    target = urlsplit(daemon.api_url).netloc
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "lifelong", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [target]}]}],
    }
    server = PrometheusServer(config, tmp_path / "prometheus")
    server.start()
    try:
        _wait_for_value(server, 'up{job="lifelong"}', 1.0)
        _wait_for_value(server, 'lifelong_ingest_records_stored_total{job="lifelong"}', float(VALID))
        _wait_for_value(server, 'sum(lifelong_ingest_dead_letters_total{job="lifelong"})', float(BAD))
        assert _scalar(server, 'lifelong_ingest_dead_letters_total{job="lifelong", reason="not_json"}') == BAD
        assert _scalar(server, 'lifelong_ingest_records_consumed_total{job="lifelong"}') == VALID + BAD
        # Labelled counters export 0 before their first event, so rate() and increase()
        # alerts have a series to work with from the first scrape.
        assert _scalar(server, 'lifelong_training_runs_total{job="lifelong", outcome="failed"}') == 0
        # LifelongNoSuccessfulTraining measures "never succeeded" from the process start.
        started = _scalar(server, 'process_start_time_seconds{job="lifelong"}')
        assert started is not None and 0 < time.time() - started < 3600
    finally:
        server.stop()
