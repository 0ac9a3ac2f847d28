"""The folder layout is the layer diagram: no module imports from a layer above its own, and only the
front ends import xlwings (the core runs without Excel)."""

from __future__ import annotations

import ast
from pathlib import Path

import xl_ecom

PACKAGE = Path(xl_ecom.__file__).parent
# bottom up; a module may import its own layer and any layer below it
LAYERS = ["common", "policy", "rules", "ooxml", "ledger", "workflows", "frontends"]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "xl_ecom":
        return None
    if len(parts) == 1:
        return "common"  # xl_ecom/__init__ holds only the version
    return parts[1] if parts[1] in LAYERS else "frontends"  # __main__


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "xl_ecom":
                found += [(node.lineno, f"xl_ecom.{a.name}") for a in node.names]
    return found


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        yield ".".join(p for p in rel.parts if p != "__init__"), path


def test_every_module_sits_in_a_layer_package():
    loose = [m for m, _ in _modules() if m.count(".") == 1 and m not in ("xl_ecom.__main__",) and m.split(".")[1] not in LAYERS]
    assert loose == []


def test_no_import_runs_back_up():
    upward = []
    for module, path in _modules():
        mine = LAYERS.index(_layer(module))
        for line, target in _imports(path):
            layer = _layer(target)
            if layer is not None and LAYERS.index(layer) > mine:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} {module} -> {target}")
    assert upward == []


def test_only_front_ends_import_xlwings():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for module, path in _modules()
        if _layer(module) != "frontends"
        for line, target in _imports(path)
        if target.split(".")[0] == "xlwings"
    ]
    assert offenders == []
