"""The daemon's package layout and the direction of its imports (see ``daemon/__init__.py``).

Every ``daemon`` import in every module counts, lazy ones inside functions included: a
lazy import is still a dependency, it only moves when it is paid.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from daemon.config import GatePolicy
from daemon.ingest.records import Reason
from daemon.metrics import DEAD_LETTER_REASONS
from daemon.training.gate import ALL_SET

DAEMON = Path(__file__).resolve().parents[3] / "daemon"

#: What every concern shares; these import no subpackage.
SHARED = {"config", "metrics", "errors", "logs", "file_safety", "failpoints", "crontab"}
#: The concern subpackages and what each may import besides the shared modules and itself.
MAY_IMPORT = {"ingest": set(), "serving": set(), "training": {"serving"}, "governance": set(),
              "control": {"ingest", "training", "serving", "governance"}}
#: The command-line entry points: the only modules that start a daemon, so the only ones importing runtime.
ENTRY_POINTS = {"__main__", "control.cli", "control.demo"}


def _modules() -> dict[str, set[str]]:
    """Each daemon module (dotted, without ``daemon.``) and the daemon modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(DAEMON.rglob("*.py")):
        name = ".".join(path.relative_to(DAEMON).with_suffix("").parts)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "daemon":
                if node.module == "daemon":
                    deps |= {alias.name for alias in node.names}
                else:
                    deps.add(node.module.removeprefix("daemon."))
            elif isinstance(node, ast.Import):
                deps |= {a.name.removeprefix("daemon.") for a in node.names if a.name.startswith("daemon.")}
        graph[name] = deps
    return graph


GRAPH = _modules()


def _concern(module: str) -> str:
    return module.split(".")[0] if "." in module else module


def test_every_top_level_module_is_shared_wiring_or_an_entry_point() -> None:
    top = {m for m in GRAPH if "." not in m}
    assert top - SHARED - {"__init__", "__main__", "runtime"} == set(), "group new modules into a concern subpackage"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m in SHARED))
def test_shared_modules_import_no_concern(module: str) -> None:
    assert {d for d in GRAPH[module] if d not in SHARED} == set()


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _concern(m) in MAY_IMPORT))
def test_concerns_import_one_way(module: str) -> None:
    concern = _concern(module)
    allowed = SHARED | {concern} | MAY_IMPORT[concern]
    if module in ENTRY_POINTS:
        allowed = allowed | {"runtime"}
    assert {d for d in GRAPH[module] if _concern(d) not in allowed} == set()


def test_only_entry_points_import_runtime() -> None:
    importers = {m for m, deps in GRAPH.items() if "runtime" in deps}
    assert importers <= ENTRY_POINTS
    assert not GRAPH["runtime"] & ENTRY_POINTS


def test_every_import_names_an_existing_module_or_package() -> None:
    for module, deps in GRAPH.items():
        for dep in deps:
            path = DAEMON.joinpath(*dep.split("."))
            assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), f"{module} imports {dep}"


def test_the_metrics_reasons_are_the_records_reasons() -> None:
    # metrics lists them itself so as to import no concern; they must stay the same list.
    assert sorted(DEAD_LETTER_REASONS) == sorted(r.value for r in Reason)


def test_the_gate_policy_defaults_to_the_gates_all_set() -> None:
    assert GatePolicy().primary_set == ALL_SET


def test_the_runtime_holds_typed_parts_only() -> None:
    # The runtime wires parts; an Any-typed field would hide which part it is.
    tree = ast.parse((DAEMON / "runtime.py").read_text(encoding="utf-8"))
    annotations = [ast.unparse(node.annotation) for node in ast.walk(tree) if isinstance(node, ast.AnnAssign)]
    assert annotations and not [a for a in annotations if "Any" in a]


def test_every_daemon_exception_derives_from_daemon_error() -> None:
    import importlib
    import inspect

    from daemon.errors import DaemonError

    defined = []
    for module in GRAPH:
        if module == "__main__":
            continue
        loaded = importlib.import_module("daemon" if module == "__init__" else f"daemon.{module}")
        defined += [cls for _, cls in inspect.getmembers(loaded, inspect.isclass)
                    if cls.__module__ == loaded.__name__ and issubclass(cls, BaseException)]
    assert len(defined) >= 10
    assert [cls.__qualname__ for cls in defined if not issubclass(cls, DaemonError)] == []
