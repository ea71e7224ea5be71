"""A student as an ONNX graph (``tinykd export MODEL --onnx scorer.onnx``; the ``[export]`` extra).

The graph (opset 17, built with the ``onnx`` package's helper API; ONNX's own ``LSTM`` operator)::

    ids (n, L) int64, lengths (n,) int32
      ─ Gather(E) ─ (n, L, E) ─ Transpose ─ (L, n, E)
      ─ LSTM (sequence_lens = max(lengths, 1); direction forward | bidirectional)
      ─ pooling: the last state Y_h, or the max of Y over the real steps t < lengths only
      ─ (n, D·H), zeros for an empty answer (length 0)
      ─ [MatMul + Add + Relu | Selu] ─ MatMul + Add ─ logits (n, K) float32
      ─ softmax(float64(logits) · 1/T) ─ proba (n, K) float32

ONNX's LSTM keeps its gates in the order i, o, f, c (tinykd: i, f, g, o) and applies ``X Wᵀ``:
its ``W`` is tinykd's ``W`` with the gate blocks reordered, transposed; ``R`` likewise from ``U``;
its bias ``B = [b | 0]`` (tinykd has one bias, ONNX a pair that it adds).

Beside the graph, a JSON file (``scorer.json`` for ``scorer.onnx``) holds the classes, the
calibration temperature, the review threshold, the tokenizer settings with a short reference
of how to tokenize, and the vocabulary (:mod:`tinykd.export.common`). A :class:`~tinykd.scoring.student.Bundle`
writes one graph per item (``scorer.item0.onnx``, …) and the JSON index of the items. Each graph's
``metadata_props`` carry the classes, their names (``tinykd.label_names``), the temperature, the review
threshold and the context's column too (JSON text; :func:`add_metadata`).

The ``onnx`` package is imported only inside :func:`student_graph` (never by ``import tinykd``
or by scoring).
"""
from __future__ import annotations

import json
import os

import numpy as np

from tinykd.files.atomic import atomic_write_bytes, existing_target
from tinykd.export.common import describe_student, header, json_bytes, model_items
from tinykd.nn.dense import SELU_ALPHA, SELU_LAMBDA

INSTALL = "ONNX export needs the onnx package: pip install 'tinykd[export]'"
OPSET = 17
#: tinykd's gate blocks (i, f, g, o) in ONNX's order (i, o, f, c)
_ONNX_GATES = (0, 3, 1, 2)


def available():
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def _gates(a, H):
    """The last axis's four gate blocks, reordered from tinykd's i, f, g, o to ONNX's i, o, f, c."""
    return np.concatenate([a[..., k * H:(k + 1) * H] for k in _ONNX_GATES], axis=-1)


class _Graph:
    """The initializers and nodes of a graph under construction, in the order they are added."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.inits, self.nodes = [], []

    def const(self, name, value):
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, outputs, **attrs):
        self.nodes.append(self.helper.make_node(op, inputs, outputs, name=f"{op}_{len(self.nodes)}", **attrs))
        return outputs[0] if len(outputs) == 1 else outputs


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def student_graph(net, temperature=1.0, name="tinykd"):
    """The ONNX ``ModelProto`` of one :class:`~tinykd.nn.network.StudentNet`: inputs ``ids`` (n, L) int64
    and ``lengths`` (n,) int32; outputs ``proba`` (n, K) float32 (calibrated by ``temperature``)
    and ``logits`` (n, K) float32."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ImportError(INSTALL) from None

    g = _Graph(helper, numpy_helper)
    y, y_h = _lstm(g, net, temperature)
    pooled = _max_over_real_steps(g, y, TensorProto) if net.config["pooling"] == "max" else y_h
    _head(g, net, _features(g, pooled), TensorProto)
    K = net.n_classes
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", "L"]),
         helper.make_tensor_value_info("lengths", TensorProto.INT32, ["n"])],
        [helper.make_tensor_value_info("proba", TensorProto.FLOAT, ["n", K]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", K])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tinykd",
                              doc_string="tinykd student: ids (n, L) int64 right-padded, lengths (n,) int32 → "
                              "proba (n, K) = softmax(logits / T), logits (n, K); see the JSON beside it")
    model.ir_version = min(model.ir_version, 8)  # readable by older ONNX Runtimes (opset 17 needs IR 8)
    onnx.checker.check_model(model)
    return model


def _lstm(g, net, temperature):
    """Embedding lookup and ONNX's LSTM: ``(Y (L, D, n, H), Y_h (D, n, H))``. Also the graph's
    shared constants (the initializers keep this order)."""
    cfg, p = net.config, net.p
    dirs = ("fwd", "bwd") if cfg["rnn"] == "bilstm" else ("fwd",)
    D, H = len(dirs), cfg["units"]
    g.const("E", _f32(p["emb.E"]))
    g.const("W", _f32(np.stack([_gates(p[f"rnn.{d}.W"], H).T for d in dirs])))          # (D, 4H, E)
    g.const("R", _f32(np.stack([_gates(p[f"rnn.{d}.U"], H).T for d in dirs])))          # (D, 4H, H)
    g.const("B", _f32(np.stack([np.concatenate([_gates(p[f"rnn.{d}.b"], H), np.zeros(4 * H)]) for d in dirs])))
    g.const("one_i32", np.array(1, np.int32))
    g.const("zero_i32", np.array(0, np.int32))
    g.const("zero_f", np.array(0.0, np.float32))
    g.const("feat_shape", np.array([0, D * H], np.int64))
    g.const("inv_t", np.array(1.0 / float(temperature), np.float64))
    x = g.node("Gather", ["E", "ids"], ["x"], axis=0)                                 # (n, L, E)
    xt = g.node("Transpose", [x], ["x_t"], perm=[1, 0, 2])                           # (L, n, E)
    lens1 = g.node("Max", ["lengths", "one_i32"], ["lens1"])  # an empty answer runs one PAD step, zeroed later
    return g.node("LSTM", [xt, "W", "R", "B", lens1], ["Y", "Y_h"], hidden_size=H,
                  direction="bidirectional" if D == 2 else "forward")             # (L, D, n, H), (D, n, H)


def _max_over_real_steps(g, y, TensorProto):
    """Global max pooling of Y (L, D, n, H) over the real steps t < lengths only → (D, n, H)."""
    g.const("neg_inf", np.array(-np.inf, np.float32))
    g.const("zero_i64", np.array(0, np.int64))
    g.const("one_i64", np.array(1, np.int64))
    g.const("axis1", np.array([1], np.int64))
    g.const("axes0", np.array([0], np.int64))
    g.const("axes13", np.array([1, 3], np.int64))
    shape = g.node("Shape", ["ids"], ["ids_shape"])
    L = g.node("Gather", [shape, "one_i64"], ["L"], axis=0)
    steps = g.node("Range", ["zero_i64", L, "one_i64"], ["steps"])              # (L,)
    steps = g.node("Unsqueeze", [steps, "axis1"], ["steps_col"])                 # (L, 1)
    lens64 = g.node("Cast", ["lengths"], ["lens64"], to=TensorProto.INT64)
    lens_row = g.node("Unsqueeze", [lens64, "axes0"], ["lens_row"])              # (1, n)
    real = g.node("Less", [steps, lens_row], ["real"])                           # (L, n): t < length
    real = g.node("Unsqueeze", [real, "axes13"], ["real4"])                      # (L, 1, n, 1)
    ym = g.node("Where", [real, y, "neg_inf"], ["Y_masked"])
    return g.node("ReduceMax", [ym], ["pooled"], axes=[0], keepdims=0)          # (D, n, H)


def _features(g, pooled):
    """(D, n, H) → the head's input (n, D·H), zeros for an empty answer (length 0)."""
    feat = g.node("Transpose", [pooled], ["feat_dnh"], perm=[1, 0, 2])               # (n, D, H)
    feat = g.node("Reshape", [feat, "feat_shape"], ["feat_raw"])                     # (n, D·H)
    nonempty = g.node("Greater", ["lengths", "zero_i32"], ["nonempty"])
    g.const("axes1", np.array([1], np.int64))
    nonempty = g.node("Unsqueeze", [nonempty, "axes1"], ["nonempty_col"])
    return g.node("Where", [nonempty, feat, "zero_f"], ["feat"])


def _head(g, net, h, TensorProto):
    """[MatMul + Add + Relu | Selu] ─ MatMul + Add ─ ``logits``; ``proba`` = softmax(float64(logits) · 1/T)."""
    cfg, p = net.config, net.p
    if cfg["dense_units"]:
        g.const("hidden_W", _f32(p["hidden.W"]))
        g.const("hidden_b", _f32(p["hidden.b"]))
        h = g.node("Add", [g.node("MatMul", [h, "hidden_W"], ["hidden_mm"]), "hidden_b"], ["hidden_z"])
        act = cfg["dense_activation"]
        if act == "relu":
            h = g.node("Relu", [h], ["hidden"])
        elif act == "selu":
            h = g.node("Selu", [h], ["hidden"], alpha=SELU_ALPHA, gamma=SELU_LAMBDA)
    g.const("out_W", _f32(p["out.W"]))
    g.const("out_b", _f32(p["out.b"]))
    logits = g.node("Add", [g.node("MatMul", [h, "out_W"], ["out_mm"]), "out_b"], ["logits"])
    z = g.node("Mul", [g.node("Cast", [logits], ["logits64"], to=TensorProto.DOUBLE), "inv_t"], ["scaled"])
    g.node("Cast", [g.node("Softmax", [z], ["proba64"], axis=-1)], ["proba"], to=TensorProto.FLOAT)


#: what each graph's ``metadata_props`` hold beside the header (:func:`add_metadata`)
METADATA = ("classes", "label_names", "temperature", "review_below", "uses_context", "context_text")


def add_metadata(graph, fields):
    """Put ``fields`` in ``graph.metadata_props`` (each value as JSON text, keys ``tinykd.<name>``), so an app
    that opens the graph alone still has the classes, their names and the review threshold."""
    del graph.metadata_props[:]
    for key, value in fields.items():
        if value is not None:
            prop = graph.metadata_props.add()
            prop.key, prop.value = f"tinykd.{key}", json.dumps(value, ensure_ascii=False)


def output_paths(path, model):
    """``(index JSON path, [graph path per item])`` that :func:`export_onnx` writes for ``path``."""
    path = os.fspath(path)
    base = path[:-5] if path.lower().endswith(".onnx") else path
    items = model_items(model)
    if items[0][0] is None:
        return base + ".json", [path]
    return base + ".json", [f"{base}.item{k}.onnx" for k in range(len(items))]


def export_onnx(model, path, review_below=None):
    """Write ``model`` (a :class:`~tinykd.scoring.student.Student` or a :class:`~tinykd.scoring.student.Bundle`) as ONNX
    beside its JSON description (each file atomically); returns the paths written, the JSON first."""
    index_path, graphs = output_paths(path, model)
    for p in [index_path, *graphs]:  # refuse a link, a device, a folder … before anything is written
        existing_target(p)
    entries, blobs = [], []
    for (item, st), gpath in zip(model_items(model), graphs):
        entry = {"graph": os.path.basename(gpath), **describe_student(st, review_below)}
        graph = student_graph(st.net, st.temperature)
        add_metadata(graph, {"item": item, **header(model), **{k: v for k, v in entry.items() if k in METADATA}})
        blobs.append(graph.SerializeToString())
        entries.append(entry if item is None else {"item": item, **entry})
    head = {"format": "tinykd-onnx/1", **header(model),
            "inputs": {"ids": "int64 (n, L), right-padded with 0", "lengths": "int32 (n,), true token counts"},
            "outputs": {"proba": "float32 (n, K): softmax(logits / temperature), columns in the order of classes",
                        "logits": "float32 (n, K)"}}
    single = graphs == [os.fspath(path)] and "item" not in entries[0]
    index = {**head, **entries[0]} if single else {**head, "items": entries}
    index_bytes = json_bytes(index)  # before any graph is written: nothing half-written
    for gpath, blob in zip(graphs, blobs):
        atomic_write_bytes(gpath, blob)
    atomic_write_bytes(index_path, index_bytes)
    return [index_path, *graphs]
