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
    for mod in ("nn/_jit.py", "nn/_lstm_kernels.py", "nn/_pool_kernels.py", "_scoring_kernels.py",
                "_optim_kernels.py", "nn/lstm.py", "nn/reference.py"):
        text = (ROOT / mod).read_text(encoding="utf-8")
        assert not [n for n in names if n in text], mod


def _imported(node):
    return [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]


def test_no_deep_learning_stack_or_optional_extra_in_tinykd():
    banned = ("torch", "tensorflow", "transformers", "onnx", "dask", "distributed", "matplotlib", "pandas", "pyarrow")
    dask = ("dask", "distributed", "pandas")
    for p in ROOT.rglob("*.py"):
        # the [report], [export] and [dask] extras' homes
        allowed = {ROOT / "plots.py": ("matplotlib",), ROOT / "export_onnx.py": ("onnx",), ROOT / "dask.py": dask,
                   ROOT / "daskfiles.py": dask}.get(p, ())
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):  # (not tinykd.dask)
                mods = _imported(node)
                assert not [m for m in mods if m.split(".")[0] in banned and m.split(".")[0] not in allowed], (p, mods)


def test_matplotlib_is_imported_only_inside_the_plot_functions():
    tree = ast.parse((ROOT / "plots.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert top and not [m for n in top for m in _imported(n) if m.startswith("matplotlib")]
    inside = [m for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for m in _imported(n)]
    assert "matplotlib.figure" in inside


def test_onnx_is_imported_only_inside_the_export_functions():
    tree = ast.parse((ROOT / "export_onnx.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert top and not [m for n in top for m in _imported(n) if m.split(".")[0] == "onnx"]
    inside = [m for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for m in _imported(n)]
    assert "onnx" in inside


@pytest.mark.parametrize("module", ["dask.py", "daskfiles.py"])
def test_the_dask_extra_is_imported_only_inside_functions(module):
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    top = [m for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) for m in _imported(n)]
    assert top and not [m for m in top if m.split(".")[0] in ("dask", "distributed", "pandas", "pyarrow")], top
    inside = [m for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for m in _imported(n)]
    assert "distributed" in inside or "dask.dataframe" in inside


def test_tinykd_dask_imports_the_real_dask():
    """tinykd/dask.py is named like the package it uses: inside it, ``import dask`` is the real one."""
    pytest.importorskip("dask")
    import dask

    import tinykd.dask

    assert tinykd.dask.__name__ == "tinykd.dask" and dask.__name__ == "dask" and hasattr(dask, "delayed")
    assert not dask.__file__.startswith(str(ROOT))
