"""Soak: one ``lifelong run`` fed a long stream with retrains along the way; resources must stay bounded.

Operators leave the daemon running for months. This runs the real process (embedded
broker, SQLite, the control API) through ``--records`` records (1% malformed) in
chunks, asks for a retrain every ``--records / --retrains`` records, and after every
chunk samples the daemon's resident memory and open file descriptors. It prints the
curve and the figures: records produced, stored, dead-lettered, lost (must be 0),
retrains that succeeded, RSS and fd growth from the first retrain to the end, and
ERROR lines in the daemon's log (must be 0).

The model is a tiny BERT built on the fly unless ``--base-model`` is given: the soak
measures the daemon, not learning, and the tiny model keeps ten retrains over a million
records to about an hour on two cores.

    python -m benchmarks.soak                                   # 1,000,000 records, 10 retrains
    python -m benchmarks.soak --records 20000 --retrains 3      # the size CI runs
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.daemon_driver import DaemonFailed, DaemonProcess
from daemon.ingest.broker import EmbeddedBroker

logger = logging.getLogger("benchmarks.soak")

LABELS = [f"c{i}" for i in range(8)]
#: Every 100th record is malformed (it must become a dead letter, not a loss).
BAD_EVERY = 100


def _resources(pid: int) -> tuple[float, int]:
    """(resident MiB, open file descriptors) of ``pid``."""
    rss_kib = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
    return rss_kib / 1024, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _chunk(start: int, size: int) -> list[Any]:
    from tests.tiny_model import keywords

    records: list[Any] = []
    for i in range(start, start + size):
        if i % BAD_EVERY == BAD_EVERY - 1:
            records.append({"text": "", "label": "c0"})  # empty text: a dead letter
            continue
        label = LABELS[i % len(LABELS)]
        words = keywords(label)
        records.append({"text": f"w{i % 50} {words[i % 3]} w{(i * 7) % 50} n{i}", "label": label, "id": f"s{i}"})
    return records


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    base_model = args.base_model
    if base_model is None:
        from tests.tiny_model import build_tiny_bert

        base_model = build_tiny_bert(workdir / "tiny", LABELS)
    env = {"LIFELONG_TRAINING__BASE_MODEL": str(base_model),
           "LIFELONG_TRAINING__STRATEGY": json.dumps({"name": "replay", "learning_rate": 0.005, "epochs": 1,
                                                      "batch_size": 64, "max_length": 24}),
           "LIFELONG_TRAINING__BUFFER__SIZE": "500",
           "LIFELONG_SCHEDULE__MIN_GAP_S": "0"}
    chunks = max(1, args.records // args.chunk)
    retrain_every = max(1, chunks // max(1, args.retrains))
    samples: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with EmbeddedBroker(log_path=workdir / "tansu.log") as broker, \
            DaemonProcess(workdir / "daemon", bootstrap_servers=broker.bootstrap_servers, topic="soak",
                          env=env) as daemon:
        for index in range(chunks):
            daemon.produce(_chunk(index * args.chunk, args.chunk))
            daemon.wait_stored(timeout_s=600)
            if (index + 1) % retrain_every == 0 and len(runs) < args.retrains:
                run = daemon.retrain(timeout_s=3600)
                runs.append({"id": run["id"], "status": run["status"], "outcome": run["outcome"],
                             "train_examples": run.get("train_examples")})
            assert daemon.pid is not None
            rss_mib, fds = _resources(daemon.pid)
            samples.append({"records": daemon.sent, "rss_mib": round(rss_mib, 1), "fds": fds,
                            "retrains": len(runs), "elapsed_s": round(time.monotonic() - started, 1)})
            logger.info("%d records, %d retrains: RSS %.0f MiB, %d fds", daemon.sent, len(runs), rss_mib, fds)
        status = daemon.api("GET", "/v1/status")
        log_path = daemon.log_path
    stored = status["samples"]["total"]
    dead = sum(status["dead_letters"].values())
    errors = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if " ERROR " in line]
    after_first_retrain = next((s for s in samples if s["retrains"] >= 1), samples[0])
    return {
        "records": daemon.sent, "stored": stored, "dead_lettered": dead, "lost": daemon.sent - stored - dead,
        "retrains": len(runs), "retrains_succeeded": sum(r["status"] == "succeeded" for r in runs), "runs": runs,
        "rss_mib": {"first": samples[0]["rss_mib"], "after_first_retrain": after_first_retrain["rss_mib"],
                    "last": samples[-1]["rss_mib"], "max": max(s["rss_mib"] for s in samples)},
        "rss_growth_after_first_retrain_mib": round(samples[-1]["rss_mib"] - after_first_retrain["rss_mib"], 1),
        "fds": {"min": min(s["fds"] for s in samples), "max": max(s["fds"] for s in samples),
                "last": samples[-1]["fds"]},
        "error_lines": len(errors), "first_errors": errors[:5],
        "wall_s": round(time.monotonic() - started, 1), "curve": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records to stream (1%% malformed)")
    parser.add_argument("--retrains", type=int, default=10, help="retrains spread over the stream")
    parser.add_argument("--chunk", type=int, default=20_000, help="records between resource samples")
    parser.add_argument("--base-model", type=Path, help="model directory (default: a tiny BERT built here)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per status poll otherwise
    with tempfile.TemporaryDirectory(prefix="lifelong-soak-") as tmp:
        try:
            figures = run(args, Path(tmp))
        except DaemonFailed as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 1
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    curve = figures.pop("curve")
    sys.stdout.write("records  retrains  RSS MiB  fds\n")
    for sample in curve:
        sys.stdout.write(f"{sample['records']:>7}  {sample['retrains']:>8}  {sample['rss_mib']:>7}  {sample['fds']:>3}\n")
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
