"""Figures the fault and abuse tests report for ``benchmarks/RELIABILITY.md``.

A test calls :func:`record_case` after its assertions passed; the line goes to the
JSON-lines file named by ``LIFELONG_TEST_RELIABILITY_OUT`` (set by
``python -m benchmarks.reliability``) and nowhere otherwise, so the normal test run is
unchanged.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["ENV", "record_case"]

ENV = "LIFELONG_TEST_RELIABILITY_OUT"


def record_case(case: str, *, inflicted: str, checked: str, **figures: Any) -> None:
    """One row of the report: what was done to lifelong, what held, and the numbers."""
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"case": case, "inflicted": inflicted, "checked": checked, "figures": figures}) + "\n")
