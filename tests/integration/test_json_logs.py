"""``logging.json: true``: everything ``lifelong run`` writes is one JSON event per line, with no sample text.

Log shippers split on newlines and parse each line; one stray plain line (a library
warning, the training child's output) breaks that. Sample text must never reach INFO
logs: it may be personal data.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from daemon.ingest.broker import EmbeddedBroker, free_port
from tests.conftest import produce, record, start_lifelong_run, wait_for
from tests.tiny_model import build_tiny_bert, keywords

LABELS = ["c0", "c1"]
TOKEN = "json-logs-token"
MARKER = "zqxprivate"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


def test_json_logs_one_event_per_line_without_sample_text(
    broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path
) -> None:
    port = free_port()
    texts = [f"{MARKER}{i} {keywords(LABELS[i % 2])[0]}" for i in range(60)]
    values: list[bytes | None] = [record(text, LABELS[i % 2]) for i, text in enumerate(texts)]
    values += [f"{MARKER} not json".encode(), record(f"{MARKER}\u0000nul", "c0"), None]
    produce(broker.bootstrap_servers, topic, values)

    log_path = tmp_path / "daemon.log"
    process = start_lifelong_run(
        broker, topic, sqlite_url, tmp_path, port, LIFELONG_API__TOKEN=TOKEN, LIFELONG_LOGGING__JSON="true",
        LIFELONG_TRAINING__BASE_MODEL=str(tiny_bert),
        LIFELONG_TRAINING__STRATEGY='{"name": "replay", "epochs": 2, "batch_size": 16, "max_length": 24}',
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        def stored() -> bool:
            try:
                return httpx.get(f"{base}/v1/status", headers=headers, timeout=5).json()["samples"]["total"] == 60
            except httpx.HTTPError:
                return False

        wait_for(stored, timeout_s=60, what="records stored")
        run_id = httpx.post(f"{base}/v1/retrain", json={}, headers=headers, timeout=10).json()["run_id"]
        wait_for(lambda: httpx.get(f"{base}/v1/runs/{run_id}", headers=headers, timeout=5).json()["status"]
                 != "running", timeout_s=180, what="the retrain")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()

    lines = log_path.read_text(encoding="utf-8").splitlines()
    events = []
    for line in lines:
        if line.strip():
            event = json.loads(line)  # a plain line anywhere fails here
            assert {"ts", "level", "logger", "message"} <= event.keys(), line
            events.append(event)
    messages = [e["message"] for e in events]
    assert any("lifelong" in m and "running" in m for m in messages)
    assert any(e["logger"] == "daemon.training.lifecycle" and f"run {run_id}" in e["message"] for e in events)
    assert any("shutting down" in m for m in messages)
    assert not [line for line in lines if MARKER in line], "sample text reached the logs"
    assert not [e for e in events if e["logger"].startswith("apscheduler") and e["level"] == "INFO"]
    assert not [line for line in lines if "\\u001b[" in line], "terminal colour codes in JSON logs"
