"""Load a JSONL or CSV file into a topic (``lifelong produce``).

JSONL lines are sent byte for byte, so a malformed line reaches the daemon and
becomes a dead letter exactly as it would from any other producer. CSV needs a
header with ``text`` and ``label`` columns (``id`` and ``ts`` optional); each row is
sent as the JSON record the input contract describes.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from daemon.errors import DaemonError

__all__ = ["ProduceError", "produce_values", "read_values"]

logger = logging.getLogger(__name__)

_CSV_FIELDS = ("id", "text", "label", "ts")


class ProduceError(DaemonError):
    """The file cannot be read or the broker refused the records."""


def read_values(path: Path) -> Iterator[bytes]:
    """Record values from ``path`` (``.jsonl``/``.json``/``.ndjson`` or ``.csv``), blank lines skipped."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson", ".json"):
            with path.open("rb") as handle:
                for line in handle:
                    line = line.rstrip(b"\r\n")
                    if line.strip():
                        yield line
        elif suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                missing = {"text", "label"} - set(reader.fieldnames or ())
                if missing:
                    raise ProduceError(f"{path}: CSV header lacks column(s) {sorted(missing)}")
                for row in reader:
                    record = {key: row[key] for key in _CSV_FIELDS if row.get(key) not in (None, "")}
                    yield json.dumps(record, ensure_ascii=False).encode("utf-8")
        else:
            raise ProduceError(f"{path}: unknown file type {suffix!r}; use .jsonl or .csv")
    except OSError as exc:
        raise ProduceError(f"cannot read {path}: {exc.strerror or exc}") from exc


def produce_values(
    values: Iterator[bytes],
    *,
    bootstrap_servers: list[str] | str,
    topic: str,
    client_options: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Send every value to ``topic``; returns how many the broker acknowledged.

    Raises
    ------
    ProduceError
        The broker is unreachable or rejected a record.
    """
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id="lifelong-produce",
            linger_ms=20,
            max_request_size=16 * 1024 * 1024,
            **(client_options or {}),
        )
    except KafkaError as exc:
        raise ProduceError(f"cannot reach broker {bootstrap_servers}: {exc}") from exc
    sent = 0
    try:
        futures = []
        for value in values:
            futures.append(producer.send(topic, value=value))
            if len(futures) >= 10_000:
                sent += _settle(futures, producer)
                if progress:
                    progress(sent)
        sent += _settle(futures, producer)
        if progress:
            progress(sent)
    except KafkaError as exc:
        raise ProduceError(f"producing to {topic} failed after {sent} records: {exc}") from exc
    finally:
        producer.close(timeout=10)
    return sent


def _settle(futures: list[Any], producer: KafkaProducer) -> int:
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    count = len(futures)
    futures.clear()
    return count
