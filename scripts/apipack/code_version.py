"""The version of the code that computes a rule's result: a hash of its script and of the
package modules that the script imports, directly or not. A rule whose params hold it reruns
when that code changes (docs/reruns.md, "When does a job rerun")."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = "apipack"


def _imported(tree: ast.AST) -> set[str]:
    """Names of the package's modules that a module imports (absolutely or relatively)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith(PACKAGE + ".")}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # from .x import y, from . import x
                names |= {module.split(".")[0]} if module else {a.name for a in node.names}
            elif module == PACKAGE:
                names |= {a.name for a in node.names}
            elif module.startswith(PACKAGE + "."):
                names.add(module.split(".")[1])
    return names


def imported_modules(script: Path, package: Path) -> list[Path]:
    """``script`` and every module of ``package`` that it imports, directly or not."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported(ast.parse(path.read_text(encoding="utf-8"))):
            if (package / f"{name}.py").is_file():
                todo.append(package / f"{name}.py")
    return sorted(seen)


def code_version(script: Path, package: Path) -> str:
    """sha256 (16 hex digits) of ``script`` and of the ``package`` modules it imports."""
    h = hashlib.sha256()
    for path in imported_modules(script, package):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]
