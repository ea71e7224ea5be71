"""The package's shape: no import circle inside tinykd/ (imports inside functions count too),
the Numba kernel modules know nothing of the student's parameter names, and the optional
extras and the teacher's stack are never imported by tinykd/."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "tinykd"


def _module_name(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path):
    """Every tinykd module that ``path`` imports, anywhere in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tinykd")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("tinykd"):
                continue
            for a in node.names:  # "from . import fitting" imports a module
                sub = f"{mod}.{a.name}"
                out.add(sub if (ROOT.parent / (sub.replace(".", "/") + ".py")).exists()
                        or (ROOT.parent / sub.replace(".", "/")).is_dir() else mod)
    out.discard(name)
    return out


GRAPH = {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


def test_no_import_circle():
    def parents(m):  # importing a.b.c runs a/__init__ and a/b/__init__ first
        parts = m.split(".")
        return {".".join(parts[:k]) for k in range(1, len(parts))}

    graph = {m: {d for d in deps if d in GRAPH} for m, deps in GRAPH.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if d == "tinykd" or d in parents(m):
                continue  # a submodule reading its own package (__version__ etc.) is not allowed either:
                # checked below
            if state.get(d) == "open":
                pytest.fail("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not [m for m, deps in graph.items() if m != "tinykd" and "tinykd" in deps], \
        "a submodule imports the package itself (a circle through tinykd/__init__.py)"


def test_kernel_modules_take_plain_arrays():
    names = ("emb.E", "rnn.fwd", "rnn.bwd", "hidden.W", "out.W", ".p[", "net.")
    for mod in ("nn/_jit.py", "nn/_lstm_kernels.py", "nn/_pool_kernels.py", "scoring/_kernels.py",
                "train/_optim_kernels.py", "nn/lstm.py", "nn/reference.py"):
        text = (ROOT / mod).read_text(encoding="utf-8")
        assert not [n for n in names if n in text], mod


def _imported(node):
    return [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]


def test_no_deep_learning_stack_or_optional_extra_in_tinykd():
    banned = ("torch", "tensorflow", "transformers", "onnx", "dask", "distributed", "matplotlib", "pandas", "pyarrow")
    dask = ("dask", "distributed", "pandas", "pyarrow")  # the [dask] extra (pyarrow: Parquet parts, streamed)
    for p in ROOT.rglob("*.py"):
        # the [report], [export] and [dask] extras' homes
        allowed = {ROOT / "quality/plots.py": ("matplotlib",), ROOT / "export/onnx_graph.py": ("onnx",),
                   ROOT / "cluster/tasks.py": dask, ROOT / "cluster/frames.py": dask}.get(p, ())
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                mods = _imported(node)
                assert not [m for m in mods if m.split(".")[0] in banned and m.split(".")[0] not in allowed], (p, mods)


def test_matplotlib_is_imported_only_inside_the_plot_functions():
    tree = ast.parse((ROOT / "quality/plots.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert top and not [m for n in top for m in _imported(n) if m.startswith("matplotlib")]
    inside = [m for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for m in _imported(n)]
    assert "matplotlib.figure" in inside


def test_onnx_is_imported_only_inside_the_export_functions():
    tree = ast.parse((ROOT / "export/onnx_graph.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert top and not [m for n in top for m in _imported(n) if m.split(".")[0] == "onnx"]
    inside = [m for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for m in _imported(n)]
    assert "onnx" in inside


@pytest.mark.parametrize("module", ["cluster/tasks.py", "cluster/frames.py"])
def test_the_dask_extra_is_imported_only_inside_functions(module):
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    top = [m for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) for m in _imported(n)]
    assert top and not [m for m in top if m.split(".")[0] in ("dask", "distributed", "pandas", "pyarrow")], top
    inside = [m for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for m in _imported(n)]
    assert "distributed" in inside or "dask.dataframe" in inside


def test_tinykd_dask_imports_the_real_dask():
    """Inside tinykd.cluster, ``import dask`` is the real one."""
    pytest.importorskip("dask")
    import dask

    import tinykd.cluster.tasks

    assert tinykd.cluster.tasks.__name__ == "tinykd.cluster.tasks" and dask.__name__ == "dask" and hasattr(dask, "delayed")
    assert not dask.__file__.startswith(str(ROOT))


#: the layers, lowest first: a module imports only from its own layer or from lower ones, so data
#: flows one way (the folder tree is the architecture; docs/design.md draws it)
LAYERS = ("_version", "errors", "settings", "nn", "files", "scoring", "quality", "train", "export", "cluster",
          "distill", "estimator", "cli")


def _layer(module):
    parts = module.split(".")
    return "tinykd" if len(parts) == 1 else parts[1]


def test_imports_only_go_down_the_layers():
    wrong = []
    for m, deps in GRAPH.items():
        if m == "tinykd":
            continue  # the package's face re-exports from every layer
        for d in deps:
            a, b = _layer(m), _layer(d)
            if a != b and b in LAYERS and LAYERS.index(b) > LAYERS.index(a):
                wrong.append(f"{m} -> {d}")
    assert not wrong, "imports that run up the layers: " + ", ".join(sorted(wrong))


def test_every_folder_is_a_layer_and_the_top_level_stays_small():
    top = sorted(p.stem for p in ROOT.glob("*.py"))
    assert len(top) <= 10, top
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(LAYERS), packages - set(LAYERS)
    assert {_layer(m) for m in GRAPH} <= set(LAYERS) | {"tinykd"}


def test_no_function_in_tinykd_is_over_80_lines():
    long = []
    for p in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, long
