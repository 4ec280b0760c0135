"""Architecture: the import graph of ``sps`` follows the layer order and has no cycle.

An AST scan of every module (imports at any depth, ``if TYPE_CHECKING:`` blocks left
out). A module may import its own package and packages of lower layers, never a package
of its own layer or above; and no chain of imports may lead back to where it started.
The layer table is the one of ``docs/architecture.md``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "sps"

#: lowest first; a package may import only packages of lower layers (and itself)
LAYERS = [
    ("base", ["sps.io", "sps.spec", "sps.native", "sps.config", "sps.backend", "sps.launch", "sps.interrupt"]),
    ("core", ["sps.frontend", "sps.features", "sps.mlpg", "sps.dsp", "sps.metrics"]),
    ("alignment", ["sps.align"]),
    ("models", ["sps.models", "sps.vocoders", "sps.train", "sps.compat"]),
    ("synthesis", ["sps.synthesis"]),
    ("stages", ["sps.stages"]),
    ("cli", ["sps.cli"]),
]
LAYER_OF = {pkg: i for i, (_, pkgs) in enumerate(LAYERS) for pkg in pkgs}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def package_of(module: str) -> str | None:
    """The layered package a module belongs to (``sps.mlpg.core`` -> ``sps.mlpg``)."""
    for pkg in sorted(LAYER_OF, key=len, reverse=True):
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return None


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(module: str) -> set[str]:
    """The sps modules ``module`` imports (resolved to modules where the name is one)."""
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    out: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names if a.name.split(".")[0] == "sps")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    target = ".".join(base[:len(base) - child.level + 1] + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] != "sps":
                    continue
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    out.add(sub if sub in MODULES else target)
            visit(child)
    visit(ast.parse(path.read_text()))
    out.discard(module)
    return {m for m in out if m in MODULES or package_of(m)}


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if m != "sps" and package_of(m) is None)
    assert not missing, f"add these packages to LAYERS (and docs/architecture.md): {missing}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if package_of(m)))
def test_imports_respect_the_layers(module):
    pkg = package_of(module)
    bad = []
    for target in sorted(GRAPH[module]):
        tpkg = package_of(target)
        if tpkg is None or tpkg == pkg:
            continue
        if LAYER_OF[tpkg] >= LAYER_OF[pkg]:
            bad.append(f"{target} ({LAYERS[LAYER_OF[tpkg]][0]} layer)")
    assert not bad, f"{module} ({LAYERS[LAYER_OF[pkg]][0]} layer) imports {', '.join(bad)}"


def test_no_import_cycles():
    """Tarjan's strongly connected components of the module graph: all singletons."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))
    for v in sorted(MODULES):
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles: {cycles}"


def test_library_imports_without_audio_libraries():
    """sps.mlpg, sps.dsp, sps.models and sps.vocoders (and the stage-free core) need no pysptk/pyworld."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['pyworld'] = None; sys.modules['pysptk'] = None\n"
            "import sps.mlpg, sps.dsp, sps.models, sps.vocoders, sps.vocoders.wavenet, sps.vocoders.wavernn, "
            "sps.train, sps.spec, sps.native, sps.backend, sps.features, sps.compat.nnmnkwii\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)
