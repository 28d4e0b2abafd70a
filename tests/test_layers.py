"""The house's layers, read from the source: imports run down, the core never reaches the demo wing."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parents[1] / "kit"

# Bottom to top; a package may import its own floor and the floors below it, never one above.
FLOORS = (
    ("kit.errors", "kit.escape", "kit.sqltext"),
    ("kit.servers", "kit.config"),
    ("kit.db",),
    ("kit.store",),
    ("kit.capture", "kit.cache", "kit.safety", "kit.audit"),
    ("kit.workload", "kit.indexes"),
    ("kit.fixes",),
    ("kit.charts",),
    ("kit.report",),  # the one-page report of a run folder: written by kit.runs at the end of a run
    ("kit.runs",),
    ("kit.benchmarks", "kit.fleet"),
    ("kit.demo",),  # the demo wing: may use the whole core
    ("kit.cli", "kit"),  # the composition root
)
DEMO = "kit.demo"
MODULE_NAME = re.compile(r"kit(\.\w+)+")


def _module(path: Path) -> str:
    parts = path.relative_to(KIT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> int:
    best = max(
        (
            (len(prefix), i)
            for i, names in enumerate(FLOORS)
            for prefix in names
            if module == prefix or module.startswith(prefix + ".")
        ),
        default=None,
    )
    assert best is not None, f"{module} is on no floor: add its package to FLOORS"
    return best[1]


def _imports(path: Path) -> list[tuple[str, int, str]]:
    """(imported kit module, line, how) for every import of ``path``, and every string naming a kit module."""
    module, found = _module(path), []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            found += [(f"{base}.{a.name}", node.lineno, "import") for a in node.names if base.startswith("kit")]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno, "import") for a in node.names if a.name.startswith("kit")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_NAME.fullmatch(node.value):
            found.append((node.value, node.lineno, "string"))
    return found


@functools.cache  # three tests read the same edges: every file of kit/ parsed once
def _edges() -> tuple[tuple[str, str, int, str], ...]:
    modules = {_module(p) for p in KIT.rglob("*.py")}
    edges = []
    for path in sorted(KIT.rglob("*.py")):
        for target, line, how in _imports(path):
            while target not in modules and "." in target:  # `from kit.x import name`: the module is kit.x
                target = target.rsplit(".", 1)[0]
            if target in modules and target != _module(path):
                edges.append((_module(path), target, line, how))
    return tuple(edges)


def test_every_module_is_on_a_floor():
    assert sorted({_floor(_module(p)) for p in KIT.rglob("*.py")}) == list(range(len(FLOORS)))


def test_no_import_runs_up_a_floor_by_name_or_by_string():
    up = [f"{src} -> {dst} (line {line}, {how})" for src, dst, line, how in _edges() if _floor(dst) > _floor(src)]
    assert up == []


def test_the_core_imports_nothing_from_the_demo_wing():
    core = [
        f"{src} -> {dst} (line {line}, {how})"
        for src, dst, line, how in _edges()
        if not (src == DEMO or src.startswith(DEMO + "."))
        and _floor(src) < _floor(DEMO)
        and (dst == DEMO or dst.startswith(DEMO + "."))
    ]
    assert core == []


def test_no_circles_between_packages():
    def package(m: str) -> str:
        return ".".join(m.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for src, dst, _, _ in _edges():
        if package(src) != package(dst):
            graph.setdefault(package(src), set()).add(package(dst))
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in seen and (circle := visit(nxt, [*path, node])):
                return circle
        seen[node] = 2
        return None

    circles = [c for n in sorted(graph) if n not in seen and (c := visit(n, []))]
    assert circles == []


@pytest.mark.parametrize("text, expected", [("kit.demo.run", True), ("kit demo", False), ("see kit.demo", False)])
def test_a_string_counts_as_an_import_only_when_it_is_a_module_name(text, expected):
    assert bool(MODULE_NAME.fullmatch(text)) is expected
