"""The import contract between the rooms of the project, read from the source (no module is imported).

- Nothing imports by a generic top-level name (``monitor``, ``consumer``, ...), doctests included:
  installed, the project is the one name ``decaywatch``.
- ``decaywatch.shared`` sits below the service and the producer; ``deploy`` uses nothing of the others;
  the rooms never import the commands (``decaywatch.cli``, ``demo``, ``replay``, ...).

- ``monitor/`` is the pure core: the standard library, numpy and orjson, and no ``print``.
- ``producer/`` and ``consumer/`` never import each other; what they share lives in ``decaywatch.shared``.
- ``decaywatch.consumer.cli`` (the ``monitor`` command) is borrowed by nobody: only the command tree
  (``decaywatch/cli.py``) registers it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("monitor", "consumer", "producer", "deploy")
CORE_ALLOWED = {"numpy", "orjson"}


def sources() -> Iterator[Path]:
    """Every Python file of the package, each once (the links under ``decaywatch/`` are not followed)."""
    for folder in ROOMS:
        yield from sorted((ROOT / folder).rglob("*.py"))
    for path in sorted((ROOT / "decaywatch").rglob("*.py")):
        if path.relative_to(ROOT / "decaywatch").parts[0] not in ROOMS:
            yield path


def imported(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (``decaywatch.x`` and the top-level ``x`` alias read alike)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name.removeprefix("decaywatch.") if name.split(".")[0] == "decaywatch" else name for name in names}


def room(path: Path) -> str:
    return path.relative_to(ROOT).parts[0]


def in_room(names: set[str], target: str) -> set[str]:
    return {name for name in names if name == target or name.startswith(f"{target}.")}


def test_sources_are_found_once() -> None:
    paths = list(sources())
    assert len(paths) == len(set(paths)) == len({path.resolve() for path in paths})
    assert {room(path) for path in paths} == {*ROOMS, "decaywatch"}
    assert ROOT / "decaywatch" / "cli.py" in paths and ROOT / "consumer" / "cli.py" in paths


@pytest.mark.parametrize("path", [p for p in sources() if room(p) == "monitor"], ids=lambda p: p.name)
def test_the_core_imports_only_stdlib_numpy_and_orjson_and_never_prints(path: Path) -> None:
    names = imported(path)
    outside = {name for name in names if name.split(".")[0] not in {*sys.stdlib_module_names, *CORE_ALLOWED, "monitor"}}
    assert not outside, f"{path.name} imports {sorted(outside)}"
    prints = [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]
    assert not prints, f"{path.name} prints on line(s) {prints}"


@pytest.mark.parametrize(("importer", "imported_room"), [("producer", "consumer"), ("consumer", "producer")])
def test_producer_and_consumer_do_not_reach_into_each_other(importer: str, imported_room: str) -> None:
    reaching = {
        str(path.relative_to(ROOT)): sorted(in_room(imported(path), imported_room))
        for path in sources()
        if room(path) == importer and in_room(imported(path), imported_room)
    }
    assert not reaching


def test_the_monitor_command_is_borrowed_by_nobody() -> None:
    borrowers = {
        str(path.relative_to(ROOT)) for path in sources() if room(path) != "consumer" and in_room(imported(path), "consumer.cli")
    }
    assert borrowers == {"decaywatch/cli.py"}  # the command tree registers it; nothing else may borrow from it


GENERIC = {"monitor", "consumer", "producer", "deploy"}
"""Top-level names the project must never import by: installed, only ``decaywatch`` exists."""


def raw_imports(path: Path) -> set[str]:
    """Module names as written, in code and in doctest examples (``>>> from x import y``)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    sources = [tree]
    for node in ast.walk(tree):
        doc = ast.get_docstring(node, clean=False) if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) else None
        if doc:
            lines = [line.strip()[4:] for line in doc.splitlines() if line.strip().startswith((">>> import", ">>> from"))]
            sources += [ast.parse(line) for line in lines]
    for source in sources:
        for node in ast.walk(source):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return names


def test_nothing_imports_by_a_generic_top_level_name() -> None:
    tests = sorted((ROOT / "tests").rglob("*.py"))
    offenders = {
        str(path.relative_to(ROOT)): sorted(name for name in raw_imports(path) if name.split(".")[0] in GENERIC)
        for path in [*sources(), *tests]
    }
    assert not {path: names for path, names in offenders.items() if names}


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("decaywatch/shared", {"consumer", "producer", "deploy", "cli", "demo", "replay", "baseline", "table"}),
        ("deploy", {"monitor", "consumer", "producer", "shared", "cli", "demo", "replay", "baseline", "table"}),
        ("consumer", {"cli", "demo", "replay", "baseline", "table", "recording"}),
        ("producer", {"cli", "demo", "replay", "baseline", "table", "recording"}),
    ],
)
def test_lower_layers_do_not_import_upper_ones(layer: str, forbidden: set[str]) -> None:
    """The shared layer sits below the service and the producer; the rooms sit below the commands."""
    reaching = {}
    for path in sources():
        if not str(path.relative_to(ROOT)).startswith(layer):
            continue
        names = {name for name in raw_imports(path) if name.startswith("decaywatch.")}
        bad = {name for name in names if name.split(".")[1] in forbidden}  # decaywatch.<room or command module>
        if bad:
            reaching[str(path.relative_to(ROOT))] = sorted(bad)
    assert not reaching
