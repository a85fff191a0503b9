"""What the operator docs tell people to run or set exists: commands, options, config keys.

Docs drift silently; a renamed option or setting in a runbook is found during an
incident, the worst time. The README, deploy/README.md and deploy/RUNBOOK.md are read
for ``lifelong ...`` invocations in code and for dotted config keys in backticks.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from daemon.config import Settings
from daemon.control.bench_cli import BENCHMARKS
from tests.deploy.test_compose import _is_group, _lifelong_invocations, _option_names, _resolve_command

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "deploy" / "README.md", ROOT / "deploy" / "RUNBOOK.md"]
SECTIONS = "|".join(Settings.model_fields)
KEY = re.compile(rf"`((?:{SECTIONS})\.[a-z_][a-z0-9_.]*)`")
FILE_NAME = re.compile(r"\.(py|md|yml|yaml|json|db)$")


def _resolves(model: type[BaseModel], dotted: str) -> bool:
    current: object = model
    for part in dotted.split("."):
        fields = getattr(current, "model_fields", None)
        if fields is None:
            return False
        by_alias = {(f.alias or name): name for name, f in fields.items()}
        name = part if part in fields else by_alias.get(part)
        if name is None:
            return False
        annotation = fields[name].annotation
        current = next((a for a in getattr(annotation, "__args__", (annotation,))
                        if isinstance(a, type) and issubclass(a, BaseModel)), annotation)
    return True


@functools.cache
def _bench_options(name: str) -> frozenset[str]:
    """A ``lifelong bench NAME`` script's own options: they pass through click, so ask its argparse."""
    module = importlib.import_module(BENCHMARKS[name][0])
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), pytest.raises(SystemExit):
        module.main(["--help"])
    return frozenset(re.findall(r"--[a-z][a-z0-9-]*", shown.getvalue()))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_lifelong_command_in_the_docs_exists(doc: Path) -> None:
    for words in _lifelong_invocations(doc.read_text(encoding="utf-8")):
        command, rest, name = _resolve_command(words)
        assert command is not None, f"{doc.name}: `lifelong {name}` is not a command"
        assert not _is_group(command), f"{doc.name}: `lifelong {name}` needs a sub-command"
        known = set(_option_names(command))
        if name.startswith("bench ") and name.split()[1] in BENCHMARKS:
            known |= _bench_options(name.split()[1])
        unknown = {word.split("=")[0] for word in rest if word.startswith("-")} - known
        assert not unknown, f"{doc.name}: `lifelong {name}` has no option {sorted(unknown)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_key_in_the_docs_exists(doc: Path) -> None:
    keys = {key for key in KEY.findall(doc.read_text(encoding="utf-8")) if not FILE_NAME.search(key)}
    missing = sorted(key for key in keys if not _resolves(Settings, key))
    assert not missing, f"{doc.name} names settings that do not exist: {missing}"


def test_the_key_check_catches_a_typo() -> None:
    assert _resolves(Settings, "schedule.min_gap_s") and _resolves(Settings, "training.strategy.name")
    assert _resolves(Settings, "logging.json") and _resolves(Settings, "gate.max_forgetting")
    assert not _resolves(Settings, "schedule.min_gap") and not _resolves(Settings, "training.strategy.nam")


def test_bench_options_come_from_the_scripts_own_parser() -> None:
    options = _bench_options("continual")
    assert {"--baselines", "--buffer-fraction", "--stage-file"} <= options and "--no-such-option" not in options
