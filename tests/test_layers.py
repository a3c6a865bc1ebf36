"""The package's layers, proven on its source: every import (at module level or inside a
function) points down the layer order of docs/architecture.md, no circle anywhere, formats
never import each other, and the torch-free modules import no torch, each on its own."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dsprep

PACKAGE_DIR = Path(dsprep.__file__).parent

# Bottom to top. A module may import modules of lower layers, and modules of its own
# package within a layer (the graph staying acyclic). The package root `dsprep` sits
# above what it re-exports and wires (Dataset.torch/loader -> dsprep.loading).
LAYERS = [
    ["dsprep.errors"],
    ["dsprep._checks", "dsprep._paths"],
    ["dsprep._io", "dsprep._outdir", "dsprep._tar", "dsprep._category_map"],
    ["dsprep.records"],
    ["dsprep.masks"],
    ["dsprep._shardio", "dsprep._cocojson"],
    ["dsprep.formats"],
    ["dsprep.conversion", "dsprep.validate", "dsprep.splitting", "dsprep.catalog"],
    ["dsprep.synth"],
    ["dsprep.loading", "dsprep.models"],
    ["dsprep.eval"],
    ["dsprep.show"],
    ["dsprep.train"],
    ["dsprep"],
    ["dsprep.commands"],
    ["dsprep.cli"],
    ["dsprep.__main__"],
]

# Inside dsprep.loading, the order a sample travels (docs/architecture.md); the package's
# __init__ only re-exports.
LOADING = ["decode", "transforms", "table", "luts", "targets", "dataset", "collate", "samplers", "shards", "build",
           "device"]

# Modules that must work without torch (conversion runs without a deep-learning stack).
TORCH_FREE = ["dsprep._checks", "dsprep._paths", "dsprep._io", "dsprep._outdir", "dsprep.records", "dsprep.masks",
              "dsprep._cocojson",
              "dsprep.conversion", "dsprep.validate", "dsprep.splitting", "dsprep.synth", "dsprep.catalog",
              "dsprep.formats", "dsprep.loading.decode", "dsprep.loading.table", "dsprep.loading.luts",
              "dsprep._shardio", "dsprep._category_map"]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> dict[str, set[str]]:
    """``{"dsprep": dsprep modules imported, "external": top-level packages}``, from every
    import statement in the module (function-level and TYPE_CHECKING ones included)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    here = name if _is_package(name) else name.rpartition(".")[0]
    found: dict[str, set[str]] = {"dsprep": set(), "external": set()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                _add(found, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[:len(here.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{target}.{alias.name}"
                _add(found, sub if sub in MODULES else target)
    found["dsprep"].discard(name)
    return found


def _add(found: dict[str, set[str]], target: str) -> None:
    if target == "dsprep" or target.startswith("dsprep."):
        while target not in MODULES:  # `import dsprep.x.y` of a name inside a module
            target = target.rpartition(".")[0]
        found["dsprep"].add(target)
    else:
        found["external"].add(target.split(".")[0])


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> tuple[int, str]:
    """(layer index, the layer entry that holds ``name``): the longest matching prefix."""
    best = None
    for i, entries in enumerate(LAYERS):
        for entry in entries:
            if name == entry or (entry != "dsprep" and name.startswith(entry + ".")):
                if best is None or len(entry) > len(best[1]):
                    best = (i, entry)
    assert best is not None, f"{name} is in no layer: place it in LAYERS (and docs/architecture.md)"
    return best


def test_every_module_has_a_layer():
    for name in MODULES:
        _layer(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    layer, entry = _layer(name)
    for target in GRAPH[name]["dsprep"]:
        t_layer, t_entry = _layer(target)
        same_package = t_entry == entry and entry != "dsprep"
        assert t_layer < layer or same_package, (
            f"{name} (layer {layer}, {entry}) imports {target} (layer {t_layer}, {t_entry}): "
            f"imports point down the layers of docs/architecture.md")


def test_no_import_circle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(GRAPH[name]["dsprep"]):
            if state.get(target) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name)


def test_records_is_the_ground_floor():
    assert GRAPH["dsprep.records"]["dsprep"] == {"dsprep.errors"}
    assert GRAPH["dsprep.errors"]["dsprep"] == set()


def test_formats_never_import_each_other():
    formats = [n for n in MODULES if n.startswith("dsprep.formats.")]
    assert len(formats) >= 5
    for name in formats:
        others = {t for t in GRAPH[name]["dsprep"] if t.startswith("dsprep.formats")}
        # a format's private helper (`_cityscapes_labels`) is part of that format
        assert all(t.rpartition(".")[2].startswith("_") for t in others), f"{name} imports {others}"


def test_loading_modules_follow_the_sample_path():
    assert sorted(n.rpartition(".")[2] for n in MODULES if n.startswith("dsprep.loading.")) == sorted(LOADING)
    for name in LOADING:
        for target in GRAPH[f"dsprep.loading.{name}"]["dsprep"]:
            if target.startswith("dsprep.loading."):
                below = LOADING[:LOADING.index(name)]
                assert target.rpartition(".")[2] in below, f"dsprep.loading.{name} imports {target}"


def test_torch_free_modules_import_no_torch_anywhere_in_their_source():
    def closure(name: str, seen: set[str]) -> set[str]:
        for target in GRAPH[name]["dsprep"]:
            if target not in seen:
                seen.add(target)
                closure(target, seen)
        return seen

    for name in TORCH_FREE + [n for n in MODULES if n.startswith("dsprep.formats.")]:
        for module in {name} | closure(name, set()):
            assert "torch" not in GRAPH[module]["external"], f"{name} reaches torch through {module}"


def test_no_import_by_name_outside_the_known_places():
    """An import by a string (importlib) would hide an edge from the tests above. Allowed: the
    formats registry, the CLI's command table and the loading package's lazy exports (each
    naming modules below it), and the mask readers a parser names in ``Dataset.info`` (data,
    not code: :func:`dsprep.masks.semantic_readers`)."""
    allowed = {"dsprep.formats", "dsprep.cli", "dsprep.loading", "dsprep.masks"}
    users = {n for n, p in MODULES.items() if "import_module" in p.read_text(encoding="utf-8")
             or "__import__" in p.read_text(encoding="utf-8")}
    assert users <= allowed, users - allowed


# The metrics promise no torch too (dsprep/eval/__init__.py); matplotlib only where a plot is drawn.
EVAL_MODULES = sorted(n for n in MODULES if n == "dsprep.eval" or n.startswith("dsprep.eval."))
NO_MATPLOTLIB = ["dsprep.records", "dsprep.conversion", "dsprep.validate", "dsprep.formats", *EVAL_MODULES]


@pytest.mark.parametrize("name", TORCH_FREE + EVAL_MODULES
                         + sorted(n for n in MODULES if n.startswith("dsprep.formats.")))
def test_module_imported_alone_leaves_torch_out(name):
    code = (f"import sys, importlib; importlib.import_module({name!r}); "
            f"print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    torch_in, matplotlib_in = out.stdout.split()
    assert torch_in == "False", f"importing {name} imported torch"
    assert matplotlib_in == "False" or not (name in NO_MATPLOTLIB or name.startswith("dsprep.formats.")), \
        f"importing {name} imported matplotlib"


# ------------------------------------------------------------------ short functions

# Formats (and what they share below them: the COCO-style JSON module), the loading package
# and the training loop keep functions short, about 80 lines of body at most (docstring not
# counted): name the steps.
MAX_BODY_LINES = 80
SHORT_FUNCTION_MODULES = ("dsprep.formats.", "dsprep.loading.", "dsprep._cocojson", "dsprep.train")
def _long_functions(limit: int) -> dict[str, int]:
    out = {}
    for name, path in MODULES.items():
        if not name.startswith(SHORT_FUNCTION_MODULES):
            continue

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    body = child.body
                    if (len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                            and isinstance(body[0].value.value, str)):
                        body = body[1:]  # the docstring does not count
                    n = child.end_lineno - body[0].lineno + 1
                    if n > limit:
                        out[f"{name}:{prefix}{child.name}"] = n
                    visit(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")

        visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return out


def test_functions_in_formats_loading_and_train_are_short():
    # no exceptions: the last long ones (the COCO JSON reader and annotation builder, coco.write)
    # were split into named steps (issue 11)
    long = _long_functions(MAX_BODY_LINES)
    assert not long, (f"functions over {MAX_BODY_LINES} lines of body: {long}; split them into named steps "
                     "(docs/architecture.md, 'Rules')")


def test_the_length_check_sees_a_long_function(tmp_path):
    # the check itself: a method of a class nested in a function is found, its docstring not counted
    src = "def f():\n    '''doc\n\n    more'''\n    class C:\n        def g(self):\n" + "            x = 1\n" * 81
    MODULES["dsprep.formats._probe"] = tmp_path / "probe.py"
    (tmp_path / "probe.py").write_text(src)
    try:
        probe = {k: v for k, v in _long_functions(80).items() if k.startswith("dsprep.formats._probe:")}
        assert probe == {"dsprep.formats._probe:f": 83, "dsprep.formats._probe:f.C.g": 81}
        assert "dsprep.formats._probe:f.C.g" not in _long_functions(81)
    finally:
        del MODULES["dsprep.formats._probe"]
