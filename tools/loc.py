"""Lines of a Python tree: all of them, and code alone (no blank lines, comments or docstrings).

    python tools/loc.py sps/vocoders [more paths ...]
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path


def count(path: Path) -> tuple[int, int]:
    """(lines, code lines) of one file."""
    src = path.read_text()
    lines = src.splitlines()
    docs = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docs.update(range(first.lineno, first.end_lineno + 1))
    code = sum(1 for i, line in enumerate(lines, 1)
               if line.strip() and not line.strip().startswith("#") and i not in docs)
    return len(lines), code


if __name__ == "__main__":
    for root in map(Path, sys.argv[1:] or ["sps"]):
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        total, code = map(sum, zip(*(count(f) for f in files)))
        print(f"{root}: {len(files)} files, {total} lines, {code} code lines")
