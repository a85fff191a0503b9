"""The daemon process must not import Avalanche: only a training worker that builds a strategy does.

Avalanche's import costs about ten seconds on a 2-core machine; paid by the daemon it
delays every start, and so every recovery after a crash, and by a worker that fits the
default discriminant head (which does not use it) it delays every retrain.
"""

from __future__ import annotations

import subprocess
import sys

DAEMON_MODULES = ["daemon.runtime", "daemon.training.lifecycle", "daemon.training.retrain", "daemon.training.scheduler", "daemon.control.api",
                  "daemon.serving.predictor", "daemon.training.evaluation", "learners.worker", "learners.train"]


def test_importing_the_daemon_and_the_worker_entry_leaves_avalanche_unloaded() -> None:
    code = ("import importlib, sys\n"
            f"for name in {DAEMON_MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m == 'avalanche' or m.startswith('avalanche.')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True)
    assert result.stdout.strip() == "[]", result.stdout[-2000:]


def test_building_a_strategy_still_loads_it() -> None:
    code = "import sys, learners.strategies; print('avalanche.training' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True)
    assert result.stdout.strip() == "True"
