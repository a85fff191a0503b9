"""The examples in module docstrings are run, so they cannot drift from the code they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

#: Modules whose docstrings hold examples; a module added here must have at least one.
WITH_EXAMPLES = ["daemon.training.gate", "daemon.training.rejection", "learners.buffer", "learners.calibration",
                 "learners.two_sample", "storage.artifacts"]


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
