"""bfloat16 for the teacher, opt-in (``--bf16 off|on|auto``; ``tinykd distill --teacher-bf16``).

With bfloat16 on, the training steps and the labelling passes run under ``torch.autocast(dtype=bfloat16)``:
the encoder's matrix products in bfloat16, the weights, the optimiser and the loss in float32, and the
classification head (``model.classifier``) in float32, so that the logits written keep float32's
resolution (bfloat16 keeps 8 significant bits: a logit near 4 would move in steps of 0.03).

``off`` (the default): float32, as before. ``on``: bfloat16, where the hardware runs it natively — a CPU
with AVX-512 BF16 or AMX BF16, or a CUDA GPU with bfloat16 (compute capability 8 or later); elsewhere
a one-line :class:`PrecisionError` (torch would emulate it, slower than float32). ``auto``: bfloat16
where supported, else float32. The soft-label sidecar records the precision used and why
(:meth:`Precision.record`). How closely bfloat16's labels follow float32's is being measured (issue 31).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from tinykd.distill.job import BF16_VALUES as BF16_CHOICES  # the values of ``--bf16``, defined once
#: the CPU features (``torch.cpu.get_capabilities()``'s names, /proc/cpuinfo's flags) that run bfloat16 natively
CPU_FEATURES = (("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX BF16"))
#: the CPU's flags where torch cannot tell (Linux)
CPUINFO = "/proc/cpuinfo"


class PrecisionError(ValueError):
    """``--bf16 on`` where bfloat16 is not supported, or a value not in :data:`BF16_CHOICES`: one line."""


@dataclass(frozen=True)
class Precision:
    """The precision a run uses: ``bf16`` (bool), ``asked`` (the ``--bf16`` value), ``why`` ("asked",
    "detected" or "not supported") and ``hardware`` (what the check found)."""

    bf16: bool
    asked: str = "off"
    why: str = "asked"
    hardware: str = ""

    @property
    def dtype(self):
        return "bfloat16" if self.bf16 else "float32"

    def record(self):
        """The sidecar's fields: ``precision`` (float32 / bfloat16), ``precision_why``, ``bf16`` (the option)
        and, where it was checked, ``bf16_hardware``."""
        return {"precision": self.dtype, "precision_why": self.why, "bf16": self.asked,
                **({"bf16_hardware": self.hardware} if self.hardware else {})}

    def describe(self):
        """The log line."""
        found = f"; {self.hardware}" if self.hardware else ""
        return f"precision {self.dtype} (--bf16 {self.asked}: {self.why}{found})"


def _cpu_features():
    """The names (:data:`CPU_FEATURES`) of this CPU's native bfloat16 features: from torch's own check
    (``torch.cpu.get_capabilities``; older torch: ``torch.cpu._is_avx512_bf16_supported``), else from the
    flags of ``/proc/cpuinfo`` (Linux)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            caps = get()
            return [name for key, name in CPU_FEATURES if caps.get(key)]
        except (RuntimeError, AttributeError):
            pass
    avx = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if avx is not None and avx():
        return [CPU_FEATURES[0][1]]
    try:
        with open(CPUINFO, encoding="utf-8", errors="replace") as f:
            flags = {w for line in f if line.startswith("flags") for w in line.split()}
    except OSError:
        return []
    return [name for key, name in CPU_FEATURES if key in flags]


def bf16_support(device):
    """``(supported, what was found)`` for bfloat16 on ``device`` (a ``torch.device``): a CUDA GPU with
    native bfloat16 (``torch.cuda.is_bf16_supported(including_emulation=False)``), a CPU with AVX-512 BF16
    or AMX BF16; any other device: not supported."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported(including_emulation=False)
        return ok, f"GPU {torch.cuda.get_device_name(device)}: " + ("bfloat16" if ok else "no native bfloat16")
    if device.type != "cpu":
        return False, f"device {device.type}: not checked for bfloat16"
    found = _cpu_features()
    return bool(found), ("CPU with " + " and ".join(found) if found else "CPU without AVX-512 BF16 or AMX BF16")


def resolve_precision(bf16, device):
    """The :class:`Precision` of ``--bf16 bf16`` on ``device``; ``on`` where it is not supported, or a
    value not in :data:`BF16_CHOICES`: :class:`PrecisionError`."""
    if bf16 not in BF16_CHOICES:
        raise PrecisionError(f"--bf16 must be one of {', '.join(BF16_CHOICES)}, not {bf16!r}")
    if bf16 == "off":
        return Precision(False)
    ok, found = bf16_support(device)
    if bf16 == "on" and not ok:
        raise PrecisionError(f"--bf16 on: bfloat16 is not supported here ({found}); use --bf16 auto "
                             "(float32 where unsupported) or off")
    return Precision(ok, bf16, "asked" if bf16 == "on" else "detected" if ok else "not supported", found)


@contextlib.contextmanager
def autocast(model, device, on):
    """Run ``model``'s forward passes in this block under bfloat16 autocast when ``on`` (else nothing
    changes), its classification head ``model.classifier`` in float32."""
    if not on:
        yield
        return
    kind = torch.device(device).type
    head = getattr(model, "classifier", None)
    if isinstance(head, torch.nn.Module):
        forward = head.forward

        def float32_forward(*args, **kwargs):
            with torch.autocast(device_type=kind, enabled=False):
                return forward(*(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args),
                               **kwargs)

        head.forward = float32_forward
    try:
        with torch.autocast(device_type=kind, dtype=torch.bfloat16):
            yield
    finally:
        if isinstance(head, torch.nn.Module):
            del head.forward  # the class's own again
