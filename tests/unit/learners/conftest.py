from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_bert

LABELS = [f"c{i}" for i in range(6)]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT directory covering the synthetic stream's six labels."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), LABELS)
