"""Class-incremental CLINC150 through ``learners.train.train_candidate``: stage by stage.

Why this exists: the default strategy's claim (no forgetting, close to joint
training) must be reproducible with one command. This script streams a labelled
dataset in stages of new labels through the same training function the daemon's
worker runs — each stage a new version continuing from the previous one, with the
replay buffer the daemon would hand it — and scores every stage on the test texts
of all labels seen so far. It does not go through Kafka, the database or the gate:
that is the daemon-level ``lifelong bench continual`` the learning-quality issue
asks for, not built yet.

Run from the repository root::

    python -m benchmarks.continual_learner                          # slda, 15 x 10, seed 0
    python -m benchmarks.continual_learner --strategy replay+lwf --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from learners.buffer import BufferConfig
from learners.config import StrategyConfig
from learners.data import Example
from learners.inference import predict
from learners.model import load_classifier
from learners.train import TrainingSpec, train_candidate

__all__ = ["main"]

_DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "clinc150" / "data_full.json"


def _load(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    if not path.is_file():
        raise SystemExit(f"error: dataset {path} not found (pass --data PATH to CLINC150's data_full.json)")
    data = json.loads(path.read_text(encoding="utf-8"))
    return [tuple(x) for x in data["train"]], [tuple(x) for x in data["test"]]


def run(data: Path, *, strategy: str, tasks: int, per_task: int, seed: int, buffer_fraction: float) -> dict:
    train, test = _load(data)
    labels = sorted({label for _, label in train})
    if tasks * per_task > len(labels):
        raise SystemExit(f"error: {tasks} x {per_task} labels asked for, the dataset has {len(labels)}")
    random.Random(seed).shuffle(labels)
    config = StrategyConfig(name=strategy)
    stages, parent, replay_pool = [], None, {}
    with tempfile.TemporaryDirectory() as root:
        for stage in range(tasks):
            new = set(labels[stage * per_task:(stage + 1) * per_task])
            seen = set(labels[:(stage + 1) * per_task])
            start = len(replay_pool)
            batch = [Example(start + i, text, label) for i, (text, label) in
                     enumerate(x for x in train if x[1] in new)]
            replay_pool.update({e.sample_id: e for e in batch})
            members = set(parent_members) if parent else set()
            replay = [replay_pool[i] for i in sorted(members)]
            size = max(1, int(buffer_fraction * len(replay_pool)))
            started = time.perf_counter()
            result = train_candidate(TrainingSpec(
                output_dir=Path(root) / f"v{stage + 1:04d}", train=batch, replay=replay, strategy=config,
                buffer=BufferConfig(size=size), parent_dir=parent))
            seconds = time.perf_counter() - started
            parent, parent_members = Path(result.output_dir), result.buffer_members
            scored = [(t, lab) for t, lab in test if lab in seen]
            got = predict(load_classifier(parent), [t for t, _ in scored]).predicted_labels
            accuracy = sum(g == lab for g, (_, lab) in zip(got, scored, strict=True)) / len(scored)
            stages.append({"stage": stage + 1, "labels": len(seen), "accuracy": accuracy,
                           "train_seconds": round(seconds, 2), "replay": len(replay)})
            print(f"seed {seed} stage {stage + 1:2d}: {len(seen):3d} labels, accuracy {accuracy:.4f}, "
                  f"train {seconds:.1f} s, replay {len(replay)}", flush=True)
    return {"strategy": strategy, "seed": seed, "stages": stages, "final": stages[-1]["accuracy"],
            "average": statistics.fmean(s["accuracy"] for s in stages)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=_DEFAULT_DATA)
    parser.add_argument("--strategy", default="slda")
    parser.add_argument("--tasks", type=int, default=15)
    parser.add_argument("--classes-per-task", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--buffer-fraction", type=float, default=0.03)
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    runs = [run(args.data, strategy=args.strategy, tasks=args.tasks, per_task=args.classes_per_task, seed=seed,
                buffer_fraction=args.buffer_fraction) for seed in args.seeds]
    finals = [r["final"] for r in runs]
    averages = [r["average"] for r in runs]
    spread = statistics.pstdev(finals) if len(finals) > 1 else 0.0
    print(f"{args.strategy}: final accuracy {statistics.fmean(finals):.4f} (+/- {spread:.4f} over seeds "
          f"{args.seeds}), average incremental accuracy {statistics.fmean(averages):.4f}")
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
