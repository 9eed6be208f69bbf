"""The layering the README's Architecture section states, read from the source as text (no
import is run): imports go only downwards (studies -> landscape -> smac_core), no file-level
import cycle, no source file over 500 lines, and every module has its line in the README."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("smac_core", "landscape", "studies")
LAYER = {"smac_core": 0, "landscape": 1, "studies": 2}
MAX_LINES = 500


def source_files() -> list[Path]:
    files = [p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))]
    return files + sorted((REPO / "notebooks").glob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports (anywhere in the file, function bodies too):
    ``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                     else node.module for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in source_files()}
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def test_imports_run_only_down_the_layers():
    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
              if a.split(".")[0] in LAYER and LAYER[b.split(".")[0]] > LAYER[a.split(".")[0]]]
    assert upward == []


def test_no_import_cycle_between_files():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_no_source_file_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in source_files()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_readme_architecture_section_names_every_module():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Architecture"):]
    end = section.find("\n## ", 1)
    named = set(re.findall(r"`([^`]+)`", section if end < 0 else section[:end]))
    missing = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO / package).as_posix()
            if relative in ("__init__.py", "__main__.py"):
                continue
            if path.name == "__init__.py":  # a sub-package: its folder is named
                found = f"{path.parent.name}/" in named
            else:
                found = bool({relative, path.name, path.stem} & named)
            if not found:
                missing.append(f"{package}/{relative}")
    assert missing == []
