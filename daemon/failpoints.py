"""Named points where the fault tests kill the daemon, to crash it exactly between two steps.

A crash between "the candidate is published" and "production points at it", or between
the alias commit and the serving swap, lasts microseconds; no signal sent from outside
lands there reliably. With ``LIFELONG_TEST_KILL_AT=<name>[,<name>…]`` in its environment
the process SIGKILLs itself when it reaches one of the named points (nothing is
flushed, no handler runs: the same as the kernel's OOM killer). Unset, a point is one
dictionary lookup.

In-process tests can instead :func:`arm` a point with an action (stop the database right
after the candidate is published, say); :func:`disarm` removes it.

These hooks stay in the product on purpose: the crash windows they reach exist only in
the product's own code path, and a stand-in would test something else. They are inert
unless a ``LIFELONG_TEST_*`` variable is set, and :func:`armed_test_hooks` lets the daemon
warn at start when one is, so a variable copied into a production environment by mistake
is loud rather than a mysterious crash.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

__all__ = ["AFTER_ALIAS", "AFTER_PUBLISH", "ENV", "TEST_HOOKS", "arm", "armed_test_hooks", "disarm", "reached"]

logger = logging.getLogger(__name__)

ENV = "LIFELONG_TEST_KILL_AT"
#: The candidate's artifact is published and its version row recorded; no decision yet.
AFTER_PUBLISH = "after_publish"
#: The production alias has moved (committed); the process has not yet served or announced it.
AFTER_ALIAS = "after_alias"

#: Every environment variable the product reads as a fault-test hook, and what it does when set.
#: (``LIFELONG_TEST_WORKER_MAX_FILE_BYTES`` is read by ``learners.worker``, named here so that
#: the daemon's start-up warning covers it without importing torch.)
TEST_HOOKS: dict[str, str] = {
    ENV: "the process kills itself with SIGKILL at these failpoints",
    "LIFELONG_TEST_WORKER_MAX_FILE_BYTES": "every file the training worker writes is capped at this many bytes "
                                           "(RLIMIT_FSIZE), so saving a candidate fails as on a full disk",
}

_armed: dict[str, Callable[[], None]] = {}


def armed_test_hooks(environ: dict[str, str] | None = None) -> list[str]:
    """One sentence per fault-test hook set in ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    return [f"{name}={env[name]!r}: {effect}" for name, effect in TEST_HOOKS.items() if env.get(name)]


def arm(name: str, action: Callable[[], None]) -> None:
    """Run ``action`` (once) when this process next reaches ``name``."""
    _armed[name] = action


def disarm(name: str) -> None:
    _armed.pop(name, None)


def reached(name: str) -> None:
    """Kill this process here if the environment names ``name``; run the action armed for it."""
    action = _armed.pop(name, None)
    if action is not None:
        logger.warning("failpoint %s reached: running its armed action", name)
        action()
    wanted = os.environ.get(ENV)
    if wanted and name in wanted.split(","):
        logger.warning("failpoint %s reached: killing this process (%s)", name, ENV)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)
