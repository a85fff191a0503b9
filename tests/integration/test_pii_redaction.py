"""PII redaction through a real daemon (broker, SQLite file, HTTP): a stream with emails, card
and phone numbers stores none of them — samples, dead letters or logged predictions — and the
model serves on what was stored."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from daemon.ingest.broker import EmbeddedBroker
from daemon.runtime import Daemon
from tests.conftest import produce, record, settings_for, wait_for, wait_run
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2"]
TOKEN = "pii-token"
SECRETS = ["jane.roe@example.com", "4111 1111 1111 1111", "+44 20 7946 0958", "DE89370400440532013000", "10.1.2.3"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny"), LABELS)


def _column(url: str, query: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query)).scalars())
    finally:
        engine.dispose()


def test_a_stream_with_pii_stores_none_of_it_anywhere(
        broker: EmbeddedBroker, topic: str, sqlite_url: str, tmp_path: Path, tiny_bert: Path) -> None:
    settings = settings_for(broker, topic, sqlite_url, tmp_path, ingest={"redact_pii": "all"},
                            api={"port": 0, "token": TOKEN},
                            serving={"log_texts": True}, training={
                                "base_model": str(tiny_bert),
                                "strategy": {"name": "replay", "learning_rate": 0.005, "epochs": 6, "batch_size": 16,
                                             "max_length": 24},
                                "buffer": {"size": 30}})
    examples = synthetic_examples(LABELS, 30, seed=1)
    values = [record(f"{e.text} {SECRETS[i % len(SECRETS)]}" if i % 3 == 0 else e.text, e.label, id=f"r{i}")
              for i, e in enumerate(examples)]
    values.append(json.dumps({"text": "no label, mail jane.roe@example.com"}).encode())  # dead-lettered
    daemon = Daemon(settings).start()
    try:
        with httpx.Client(base_url=daemon.api_url or "", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as client:
            produce(broker.bootstrap_servers, topic, values)
            wait_for(lambda: client.get("/v1/status").json()["samples"]["total"] == len(examples),
                     what="every sample stored")
            wait_for(lambda: _column(sqlite_url, "SELECT count(*) FROM dead_letter") == [1], what="the dead letter")
            assert wait_run(client, client.post("/v1/retrain", json={}).json()["run_id"])["outcome"] == "promoted"
            answer = client.post("/v1/predict", json={"texts": ["w1 c0k0 call +44 20 7946 0958"], "ids": ["p1"]})
            assert answer.status_code == 200
            wait_for(lambda: _column(sqlite_url, "SELECT count(*) FROM prediction") == [1], what="the logged answer")
            metrics = client.get("/metrics").text
    finally:
        daemon.stop()

    stored = _column(sqlite_url, "SELECT text FROM sample")
    raw = [bytes(r).decode() for r in _column(sqlite_url, "SELECT raw FROM dead_letter")]
    logged = _column(sqlite_url, "SELECT text FROM prediction")
    everything = "\n".join(stored + raw + logged)
    for secret in SECRETS:
        assert secret not in everything, secret
    assert "jane.roe" not in everything
    each = len(range(0, len(examples), 3)) // len(SECRETS)  # samples carrying each secret
    for placeholder in ("<EMAIL>", "<CARD>", "<PHONE>", "<IBAN>", "<IP>"):
        assert sum(placeholder in t for t in stored) == each, placeholder
    assert "<EMAIL>" in raw[0] and logged == ["w1 c0k0 call <PHONE>"]
    # Texts that held no PII are stored as sent.
    assert {e.text for i, e in enumerate(examples) if i % 3} <= set(stored)
    counted = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("lifelong_pii_redacted_total{")}
    # The dead letter's email and the logged answer's phone number are counted too.
    assert counted == {'entity="email"': each + 1, 'entity="phone"': each + 1, 'entity="card"': each,
                       'entity="iban"': each, 'entity="ip"': each}
