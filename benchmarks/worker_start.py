"""How long a training run takes from ``TrainingWorker.run()`` to its result, by start method.

A retrain's worker either forks from the warm fork server (``forkserver``, the default:
torch, transformers and the learner imported once) or starts a fresh interpreter that
imports them every time (``spawn``). This times the same tiny run a few times each way,
side by side in one process, so the figure is the start cost, not the training: the
first ``forkserver`` run includes starting the server (the daemon does that at boot).

    python -m benchmarks.worker_start                    # replay (imports Avalanche too)
    python -m benchmarks.worker_start --strategy slda    # the default strategy
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from learners.buffer import BufferConfig
from learners.config import StrategyConfig
from learners.train import TrainingSpec
from learners.worker import START_METHODS, TrainingWorker
from tests.tiny_model import build_tiny_bert, synthetic_examples

LABELS = ["c0", "c1", "c2"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="replay")
    parser.add_argument("--runs", type=int, default=3, help="runs per start method")
    args = parser.parse_args(argv)
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="lifelong-worker-start-") as tmp:
        work = Path(tmp)
        tiny = build_tiny_bert(work / "tiny", LABELS)
        for method in START_METHODS:
            for run in range(args.runs):
                spec = TrainingSpec(
                    output_dir=work / f"{method}-{run}", train=synthetic_examples(LABELS, 30, seed=1),
                    strategy=StrategyConfig(name=args.strategy, learning_rate=3e-3, epochs=1, batch_size=8,
                                            max_length=24),
                    buffer=BufferConfig(size=20), base_model=tiny)
                started = time.monotonic()
                TrainingWorker(spec, timeout_s=600, start_method=method).run()
                figures.setdefault(method, []).append(round(time.monotonic() - started, 2))
    later = {method: sorted(times[1:])[len(times[1:]) // 2] for method, times in figures.items() if len(times) > 1}
    sys.stdout.write(json.dumps({"strategy": args.strategy, "seconds_per_run": figures,
                                 "median_after_the_first": later}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
