"""The package's layering (README, "Layout"): every import points down the stage order and no
modules import each other in a loop -- imports inside functions included, since a lazy import
is a dependency all the same."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top; a module may import from its own package or any package below it.
LAYERS = ["_version", "core", "prompts", "data_adapters", "config", "data", "model", "decoding", "hints",
          "inference", "evaluation", "training", "cli"]
FACE = {"instructie", "instructie.__main__"}  # the package's face imports what it hands on


def _modules() -> dict[str, Path]:
    out = {}
    for base, prefix in ((ROOT / "src" / "instructie", "instructie"), (ROOT / "data_adapters", "instructie.data_adapters")):
        for f in base.rglob("*.py"):
            parts = list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = f
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # the deepest known module the import names
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name and (t.startswith("instructie")):
                found.add(t)
    return found


def _layer(module: str) -> int | None:
    if module in FACE:
        return None
    top = module.split(".")[1]
    return LAYERS.index(top)


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    # importing a module runs its packages' __init__ too, but those edges are the package's own business
    return {m: {t for t in _imports(m, p, known) if not m.startswith(t + ".") and t != "instructie"}
            for m, p in mods.items()}


def test_every_module_has_a_layer():
    for m in _modules():
        if m not in FACE:
            assert m.split(".")[1] in LAYERS, f"{m}: its package is not in the documented layer order"


def test_imports_point_down_the_layers():
    up = [f"{m} -> {t}" for m, ts in _graph().items() for t in ts
          if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)]
    assert not up, "imports that point up the layer order:\n" + "\n".join(sorted(up))


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
