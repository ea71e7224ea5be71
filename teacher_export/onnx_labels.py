"""The teacher's labelling pass through ONNX Runtime (fp32): the same probabilities as PyTorch, faster on a CPU.

The fine-tuned classifier is exported once (``torch.onnx.export``, dynamic batch and sequence axes)
to a temporary file and run by ONNX Runtime's CPU provider over the same length-sorted, dynamically
padded batches as :func:`teacher_export.finetune.predict_logits`. ``benchmarks/teacher_labelling.py``
(2 cores, 3,000 copies of ASAP-SAS item 1 answers): ONNX Runtime fp32 1.24× PyTorch fp32 with argmax
agreement 1.0000 and mean |Δp| 0.0000; dynamic int8 was 1.86× but agreed on 96.97 % of the answers,
below the 99 % the teacher's labels must keep, so it is not used.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from .finetune import _collate, predict_logits

#: run_export's ``runtime`` choices: "auto" is ONNX Runtime on a CPU when it is installed, else PyTorch
RUNTIMES = ("auto", "torch", "onnx")


class RuntimeMissing(RuntimeError):
    """``runtime="onnx"`` asked for without onnx / onnxruntime installed."""


def available():
    """Whether ONNX Runtime and the ONNX exporter's package can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def choose(runtime, device):
    """"torch" or "onnx" for ``runtime`` (one of :data:`RUNTIMES`) on ``device``."""
    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "auto":
        return "onnx" if torch.device(device).type == "cpu" and available() else "torch"
    if runtime == "onnx" and not available():
        raise RuntimeMissing("--runtime onnx needs onnx and onnxruntime: pip install onnx onnxruntime")
    return runtime


def describe(runtime):
    """What the sidecar records of the runtime that computed the probabilities."""
    if runtime == "onnx":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} fp32 (CPU)"
    return f"torch {torch.__version__}"


def _names(enc):
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in enc else [])


class _Logits(torch.nn.Module):
    """The classifier with positional inputs and its logits as the one output (what the exporter traces)."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *xs):
        return self.model(**dict(zip(self.names, xs))).logits


def session(model, enc, pad_id=0, threads=None):
    """An ONNX Runtime session of ``model`` (exported through a temporary file, fp32, CPU)."""
    import onnxruntime as ort

    names = _names(enc)
    sample = _collate(enc, list(range(min(2, len(enc["input_ids"])))), pad_id, "cpu")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "teacher.onnx")
        with torch.no_grad():
            torch.onnx.export(_Logits(model.cpu().eval(), names), tuple(sample[k] for k in names), path,
                              input_names=names, output_names=["logits"], opset_version=17, dynamo=False,
                              dynamic_axes={**{k: {0: "batch", 1: "length"} for k in names}, "logits": {0: "batch"}})
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or torch.get_num_threads())
        so.log_severity_level = 3
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def onnx_logits(model, enc, idx=None, batch_size=64, pad_id=0, progress=None, threads=None):
    """:func:`teacher_export.finetune.predict_logits` through ONNX Runtime (float64 logits, rows in
    the order of ``idx``)."""
    if len(enc["input_ids"]) == 0:
        return np.zeros((0, model.config.num_labels))
    sess, names = session(model, enc, pad_id, threads), _names(enc)

    def run(batch):
        return sess.run(None, {k: batch[k].numpy() for k in names})[0].astype(np.float64)

    return predict_logits(model, enc, idx, batch_size=batch_size, device="cpu", pad_id=pad_id,
                          progress=progress, run=run)
