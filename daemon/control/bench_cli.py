"""``lifelong bench …``: the scripts in ``benchmarks/`` under the one command line.

Each subcommand hands its arguments, unparsed, to the script's own ``main(argv)``, so
``lifelong bench ingest --records 50000`` is ``python -m benchmarks.ingest --records
50000`` and ``lifelong bench ingest --help`` shows the script's options. The scripts are
imported only when asked for: they pull in torch or start a broker, which no other
command should pay for.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer

__all__ = ["BENCHMARKS", "bench_app"]

#: Subcommand -> (module, one-line help).
BENCHMARKS: dict[str, tuple[str, str]] = {
    "ingest": ("benchmarks.ingest",
               "Ingest throughput vs a bare kafka-python consumer, and memory over 1M records."),
    "redaction": ("benchmarks.redaction",
                  "PII redaction texts/s, recall and false positives on CLINC150's texts (ingest.redact_pii)."),
    "train": ("benchmarks.train_throughput",
              "Training examples/s through learners (Avalanche) vs a plain PyTorch loop."),
    "predict": ("benchmarks.predict_latency",
                "Predict latency p50/p99, single texts and batches of 32."),
    "learner": ("benchmarks.continual_learner",
                "Class-incremental stages through the learner (no daemon): accuracy on seen labels per stage."),
    "continual": ("benchmarks.continual",
                  "Class-incremental stages through a real `lifelong run` (broker, retrain API, gate, /v1/predict), "
                  "with naive/replay/joint baselines and freshness."),
    "soak": ("benchmarks.soak",
             "A long stream with retrains through a real `lifelong run`: RSS and open files per chunk, nothing lost."),
    "reliability": ("benchmarks.reliability",
                    "Run the fault and abuse tests and write benchmarks/RELIABILITY.md from their figures."),
}

bench_app = typer.Typer(
    help="Benchmarks: measure and print (the scripts in benchmarks/; `lifelong bench NAME --help`).",
    no_args_is_help=True,
)

#: Let every option through to the script's argparse, --help included.
_PASS_THROUGH: dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _runner(name: str, module: str) -> Any:
    def run(ctx: typer.Context) -> None:
        main = importlib.import_module(module).main
        # argparse names the program after argv[0]: usage and errors then read
        # "lifelong bench ingest: error: ...", not "lifelong: error: ...".
        sys.argv = [f"lifelong bench {name}", *ctx.args]
        status = main(list(ctx.args))
        raise typer.Exit(int(status or 0))

    return run


for _name, (_module, _help) in BENCHMARKS.items():
    bench_app.command(_name, help=_help, context_settings=_PASS_THROUGH, add_help_option=False)(_runner(_name, _module))
