"""Prediction latency of the production model, as ``/v1/predict`` serves it.

Trains nothing: it puts the bundled all-MiniLM-L6-v2 encoder with a 20-label head
(the demo's label count) behind :class:`daemon.serving.predictor.Predictor` and times
``predict`` for single texts and for batches of 32, measured side by side in one run
(the machine is noisy). Prints p50/p99 in milliseconds. The single-text case is also
timed with the prediction log on (each answer handed to
:class:`daemon.serving.prediction_log.PredictionLog`, whose thread writes it to a real
SQLite file meanwhile), alternating call by call with the plain case, and the p99 ratio
printed: the log must cost the request path next to nothing.

    python -m benchmarks.predict_latency --requests 300
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import torch

from daemon.metrics import Metrics
from daemon.serving.prediction_log import PredictionLog
from daemon.serving.predictor import Predictor
from learners.model import load_base, save_classifier
from storage.artifacts import ArtifactStore
from storage.engine import make_engine, upgrade

logger = logging.getLogger("benchmarks.predict_latency")

SAMPLE = Path(__file__).resolve().parents[1] / "daemon" / "data" / "clinc150_sample.jsonl"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _time(call, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="timed calls per case")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)

    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    texts = [r["text"] for r in records]
    labels = sorted({r["label"] for r in records})
    with tempfile.TemporaryDirectory() as tmp:
        store = ArtifactStore(Path(tmp) / "models")
        staged = store.incoming_dir() / "v0001"
        save_classifier(load_base(labels=labels, max_length=48), staged)
        manifest = store.publish(staged, "v0001", lineage={}, metrics={})
        predictor = Predictor(store, batch_size=64)
        predictor.activate(predictor.prepare("v0001", checksum=manifest.checksum))

        for text in texts[:20]:  # warm-up
            predictor.predict([text])
        engine = make_engine(f"sqlite:///{Path(tmp) / 'log.db'}")
        upgrade(engine)
        log = PredictionLog(engine, Metrics(), serving_version=lambda: predictor.version).start()
        cursor = iter(range(10**9))

        def logged() -> None:
            one = [texts[next(cursor) % len(texts)]]
            result = predictor.predict(one)
            log.submit(result.version, one, [uuid.uuid4().hex], result.labels,
                       [max(p.values()) for p in result.probabilities], result.abstained)

        single: list[float] = []
        single_logged: list[float] = []
        for _ in range(args.requests):  # alternating, so both cases see the same machine
            single += _time(lambda: predictor.predict([texts[next(cursor) % len(texts)]]), 1)
            single_logged += _time(logged, 1)
        log.close()
        stored = log.metrics.registry.get_sample_value("lifelong_prediction_log_stored_total") or 0
        engine.dispose()
        batch = _time(lambda: predictor.predict([texts[(next(cursor) + i) % len(texts)] for i in range(32)]),
                      max(20, args.requests // 4))

    figures = {
        "single_p50_ms": statistics.median(single), "single_p99_ms": _percentile(single, 0.99),
        "batch32_p50_ms": statistics.median(batch), "batch32_p99_ms": _percentile(batch, 0.99),
        "batch32_texts_per_s": 32 / (statistics.median(batch) / 1000), "threads": args.threads,
        "single_logged_p50_ms": statistics.median(single_logged),
        "single_logged_p99_ms": _percentile(single_logged, 0.99), "logged_rows": int(stored),
    }
    figures["logged_p99_ratio"] = figures["single_logged_p99_ms"] / figures["single_p99_ms"]
    print(f"single text : p50 {figures['single_p50_ms']:.1f} ms  p99 {figures['single_p99_ms']:.1f} ms "
          f"({len(single)} calls)")
    print(f"single, log : p50 {figures['single_logged_p50_ms']:.1f} ms  p99 {figures['single_logged_p99_ms']:.1f} ms "
          f"(prediction log on: p99 x{figures['logged_p99_ratio']:.2f} of the plain calls; "
          f"{figures['logged_rows']} answers stored)")
    print(f"batch of 32 : p50 {figures['batch32_p50_ms']:.1f} ms  p99 {figures['batch32_p99_ms']:.1f} ms "
          f"({len(batch)} calls, {figures['batch32_texts_per_s']:.0f} texts/s)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
