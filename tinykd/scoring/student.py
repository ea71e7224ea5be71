"""Trained scorers over raw texts: a :class:`Student` (vocabulary + network + class labels)
and a :class:`Bundle` (one student per item), and :func:`load` for model files.

Prediction only: :func:`tinykd.fit` and :func:`tinykd.fit_items` make them. Each student
scores through one :class:`~tinykd.scoring.scorer.Scorer`, built on first use (the network's
weights are then read-only). Scoring needs only NumPy and Numba.
"""
from __future__ import annotations

import os

import numpy as np

from tinykd.scoring.calibration import calibrated_proba, confidence_and_correct
from tinykd.errors import OptionError
from tinykd.nn.network import StudentNet, make_config
from tinykd.scoring.modelfile import ModelFileError, model_bytes, read_bytes, read_file, write_model
from tinykd.scoring.modelmeta import (MAX_CONTEXT_CHARS, check_calibration, check_context_text,
                                      check_label_names, default_label_names, label_name_list, parse_label_names)
from tinykd.scoring.scorer import Scorer
from tinykd.scoring.text import Vocabulary, as_list


class Student:
    """A fitted student: ``vocab`` (:class:`~tinykd.scoring.text.Vocabulary`), ``net``
    (:class:`~tinykd.nn.network.StudentNet`), ``classes`` (labels, in the order of
    the probability columns) and ``meta`` (preset, training settings, metrics)."""

    def __init__(self, vocab, net, classes, meta=None, settings=None):
        if len(classes) != net.n_classes:
            raise ValueError(f"{len(classes)} class labels for a network with {net.n_classes} outputs")
        if len(vocab) != net.vocab_size:
            raise ValueError(f"vocabulary has {len(vocab)} tokens, the network expects {net.vocab_size}")
        self.vocab, self.net, self.classes = vocab, net, list(classes)
        self.meta = dict(meta or {})
        self.settings = settings  # how its scorer runs (None: tinykd.settings.DEFAULT); never the scores' values
        self._scorer = None

    @property
    def n_params(self):
        return self.net.size

    @property
    def uses_context(self):
        return bool(self.meta.get("uses_context", False))

    @property
    def temperature(self):
        """The calibration temperature fitted on the validation rows at training time
        (``meta["calibration"]``); 1.0 — the raw softmax — for a file written before
        calibration or a model trained without validation rows. A ``ValueError`` names a block
        the model file's reader would refuse (:func:`tinykd.scoring.modelmeta.check_calibration`),
        so that scoring and both exports never read two numbers from one block."""
        return check_calibration(self.meta.get("calibration"))

    @property
    def label_names(self):
        """The score names (the rubric's words), one per class in the order of ``classes``: those given
        (``--label-names``; stored as ``meta["label_names"]``), else each label itself (``1``, ``correct``).
        Set it to a list, a mapping ``{label: name}`` (classes left out keep their label), the text
        ``"0=incorrect,1=partly correct,2=correct"`` or None (the labels again); a ``ValueError`` names
        what is wrong."""
        names = self.meta.get("label_names")
        if names is None:
            return default_label_names(self.classes)
        return check_label_names(names, len(self.classes), "meta['label_names']")

    @label_names.setter
    def label_names(self, names):
        self._set_label_names(names)

    def _set_label_names(self, names, strict=True):
        if names is None:
            self.meta.pop("label_names", None)
        else:
            self.meta["label_names"] = label_name_list(self.classes, names, strict=strict)

    @property
    def context_text(self):
        """The one context every training row of this student had (an item's question or reference
        answer; ``meta["context_text"]``), which the exported page shows and fills in; None when the rows'
        contexts differed, or there was none."""
        text = self.meta.get("context_text")
        return None if text is None else check_context_text(text, "meta['context_text']")

    @property
    def scorer(self):
        """The :class:`~tinykd.scoring.scorer.Scorer` of this student (built once; freezes the weights)."""
        if self._scorer is None:
            self._scorer = Scorer(self.net, settings=self.settings, temperature=self.temperature)
        return self._scorer

    def encode(self, texts, contexts=None):
        if self.uses_context and contexts is None:
            raise ValueError("this model was trained with a context (e.g. the question); pass contexts=")
        if not self.uses_context:
            contexts = None
        return self.vocab.encode(texts, contexts)

    def predict_proba(self, texts, contexts=None, calibrated=True):
        """Class probabilities (n, K) float32, columns in the order of ``classes``; calibrated
        by :attr:`temperature` (``calibrated=False``: the raw softmax)."""
        ids, lengths = self.encode(texts, contexts)
        return self.scorer.predict_proba(ids, lengths, calibrated=calibrated)

    def validation_outcomes(self):
        """``(confidence, correct)`` of the validation rows stored at training time, calibrated
        as :meth:`predict_proba` is; None when the file holds none (no validation rows, or
        written before tinykd stored them)."""
        vp = self.meta.get("validation_predictions")
        if not vp or not vp.get("y"):
            return None
        proba = calibrated_proba(np.asarray(vp["logits"], dtype=np.float32), self.temperature)
        return confidence_and_correct(proba, vp["y"])

    def predict(self, texts, contexts=None):
        """The most probable class label of each text."""
        proba = self.predict_proba(texts, contexts)
        return np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)].tolist() if len(proba) else []

    def explain(self, texts, contexts=None, top=None):
        """For each text ``[(word, weight), ...]`` in text order: weight = the calibrated probability of the
        predicted class with the word minus without it (+: the word pushed towards the score given);
        ``top=k``: the k words of largest ``|weight|``. See :func:`tinykd.scoring.explain.explain`."""
        from tinykd.scoring.explain import explain

        return explain(self, texts, contexts, top)

    def to_entry(self):
        """This student as :func:`tinykd.scoring.modelfile.write_model` stores it."""
        return {"config": self.net.config, "vocab": self.vocab.to_config(), "tokens": self.vocab.tokens,
                "aliases": self.vocab.aliases, "classes": self.classes, "params": self.net.params, "meta": self.meta}

    def save(self, path):
        """Write the model file (atomically); see :mod:`tinykd.scoring.modelfile`."""
        write_model(path, {"default": self.to_entry()})

    def to_bytes(self):
        """The bytes of the model file :meth:`save` writes (:func:`load_bytes` reads them)."""
        return model_bytes({"default": self.to_entry()})

    def __getstate__(self):  # a pickled student rebuilds its scorer when next used
        state = dict(self.__dict__)
        state["_scorer"] = None
        return state


class UnknownItemError(ValueError):
    """Rows name items for which the bundle has no student."""


class Bundle:
    """Per-item students saved together: each item (question) of an assessment has its own rubric.

    Maps an item value (as a string) to a :class:`Student` and routes each row to its
    item's student. A row whose item has no student is an error that names the unknown
    items — never a silent guess."""

    def __init__(self, students, item_col=None):
        if not students:
            raise ValueError("a bundle needs at least one student")
        self.students = {str(k).strip(): v for k, v in students.items()}
        if len(self.students) != len(students):
            raise ValueError("item names must be distinct after conversion to text")
        self.item_col = item_col

    @property
    def items(self):
        return list(self.students)

    def __len__(self):
        return len(self.students)

    @property
    def n_params(self):
        return sum(s.n_params for s in self.students.values())

    @property
    def classes(self):
        """Every class label any item's student knows, sorted (numbers numerically)."""
        seen = {}
        for st in self.students.values():
            for c in st.classes:
                seen.setdefault(repr(c), c)
        vals = list(seen.values())
        try:
            return sorted(vals)
        except TypeError:  # mixed numbers and strings
            return sorted(vals, key=lambda v: (isinstance(v, str), str(v)))

    @property
    def uses_context(self):
        return any(s.uses_context for s in self.students.values())

    @property
    def meta(self):
        """The first student's metadata (column names, settings shared by all items)."""
        return next(iter(self.students.values())).meta

    @property
    def label_names(self):
        """The score name of each of :attr:`classes` (the first item's name where items differ; each
        student's own: ``bundle.students[item].label_names``). Setting it sets every item's (a mapping's
        label must be a class of some item)."""
        names = {}
        for st in self.students.values():
            for c, n in zip(st.classes, st.label_names):
                names.setdefault(repr(c), n)
        return [names[repr(c)] for c in self.classes]

    @label_names.setter
    def label_names(self, names):
        if names is None:
            for st in self.students.values():
                st.label_names = None
            return
        if isinstance(names, str):
            names = parse_label_names(names)
        elif not isinstance(names, dict):  # a list: one name per class of :attr:`classes`
            names = dict(zip(self.classes, label_name_list(self.classes, list(names))))
        label_name_list(self.classes, names)  # every label given is a class of some item
        for st in self.students.values():
            st._set_label_names(names, strict=False)

    def predict_proba_matrix(self, texts, items, contexts=None, classes=None, calibrated=True):
        """``(n, len(classes))`` float32 over :attr:`classes` (or ``classes``); a class an
        item's student does not know has probability 0 for that item's rows. Each item's
        student applies its own calibration (``calibrated=False``: the raw softmax)."""
        classes = self.classes if classes is None else list(classes)
        col = {repr(c): k for k, c in enumerate(classes)}
        texts = as_list(texts, "texts")
        out = np.zeros((len(texts), len(classes)), dtype=np.float32)
        for it, idx in self._groups(items).items():
            st = self.students[it]
            ctx = None if contexts is None else [contexts[i] for i in idx]
            proba = st.predict_proba([texts[i] for i in idx], ctx, calibrated=calibrated)
            cols = [col[repr(c)] for c in st.classes]
            out[np.ix_(idx, cols)] = proba
        return out

    def _groups(self, items):
        items = np.asarray([str(i).strip() for i in as_list(items, "items")], dtype=object)
        unknown = sorted(set(items.tolist()) - set(self.students))
        if unknown:
            raise UnknownItemError(f"no student for item(s) {', '.join(map(repr, unknown[:10]))}"
                                   f"{' …' if len(unknown) > 10 else ''}; the model knows {', '.join(self.items)}")
        return {it: np.flatnonzero(items == it) for it in self.students if (items == it).any()}

    def validation_outcomes(self):
        """Every item's stored validation rows, pooled (see :meth:`Student.validation_outcomes`);
        None when no item's student holds any."""
        parts = [o for o in (st.validation_outcomes() for st in self.students.values()) if o is not None]
        if not parts:
            return None
        return np.concatenate([c for c, _ in parts]), np.concatenate([k for _, k in parts])

    def predict(self, texts, items, contexts=None):
        texts = as_list(texts, "texts")
        out = [None] * len(texts)
        for it, idx in self._groups(items).items():
            st = self.students[it]
            ctx = None if contexts is None else [contexts[i] for i in idx]
            for i, lab in zip(idx, st.predict([texts[i] for i in idx], ctx)):
                out[i] = lab
        return out

    def explain(self, texts, items, contexts=None, top=None):
        """:meth:`Student.explain` of each row by its item's student (an unknown item is an error)."""
        from tinykd.scoring.explain import explain

        return explain(self, texts, contexts, top, items=items)

    def save(self, path):
        """Write the model file (atomically): one student per item, and the item map."""
        write_model(path, *self._file_parts())

    def to_bytes(self):
        """The bytes of the model file :meth:`save` writes (:func:`load_bytes` reads them)."""
        return model_bytes(*self._file_parts())

    def _file_parts(self):
        names = {f"item{k}": it for k, it in enumerate(self.students)}
        return ({n: self.students[it].to_entry() for n, it in names.items()},
                {"item_col": self.item_col, "items": names})


def data_columns(model, text=None, context=None, item=None):
    """The columns a data file is read with for ``model``: those given, else the ones the model
    was trained with (its metadata), else ``text``. Returns ``(text, context, item)``; context is
    None for a model without one, item None for a single student. Raises ``ValueError`` when the
    model needs a context or item column that is neither given nor recorded."""
    cols = dict(model.meta.get("columns") or {})
    text = text or cols.get("text") or "text"
    context = context or (cols.get("context") if model.uses_context else None)
    if model.uses_context and not context:
        raise OptionError("context_col", "this model was trained with a context column; set {opt}")
    if not isinstance(model, Bundle):
        return text, context, None
    item = item or model.item_col or cols.get("item")
    if not item:
        raise OptionError("item_col", "this model holds per-item students; set {opt}")
    return text, context, item


def add_names(model, label_names=None, contexts=None, items=None):
    """What the exported page and ``info`` show beside the scores: the score names (``label_names`` as
    :attr:`Student.label_names` takes them; None: the labels) and each item's shared context
    (:func:`store_contexts`). Called on a model just trained, before it is saved; returns it."""
    if label_names is not None:
        model.label_names = label_names
    store_contexts(model, contexts, items)
    return model


def store_contexts(model, contexts, items=None):
    """Record on each student of ``model`` (a Student, or a Bundle with the rows' ``items``) the context
    its training rows shared (:attr:`Student.context_text`), where every row of the item had one and the
    same non-blank context; returns how many students got one. ``contexts`` None: nothing."""
    if contexts is None or not model.uses_context:
        return 0
    contexts = as_list(contexts, "contexts")
    keys = [None] * len(contexts) if items is None else [str(i).strip() for i in as_list(items, "items")]
    seen = {}
    for key, ctx in zip(keys, contexts):
        seen.setdefault(key, set()).add("" if ctx is None else str(ctx).strip())
    students = model.students if isinstance(model, Bundle) else {None: model}
    stored = 0
    for key, st in students.items():
        texts = seen.get(key, set())
        st.meta.pop("context_text", None)
        if len(texts) == 1 and 0 < len(next(iter(texts))) <= MAX_CONTEXT_CHARS and st.uses_context:
            st.meta["context_text"] = check_context_text(next(iter(texts)))
            stored += 1
    return stored


def save(model, path):
    """Save a :class:`Student` or a :class:`Bundle` to ``path`` (atomically)."""
    model.save(path)


def _build_student(name, sm, arrays, settings):
    cfg = make_config(None, **sm["config"])
    vocab = Vocabulary.from_tokens(arrays[f"{name}/vocab"].tolist(), sm["vocab"])
    if f"{name}/aliases" in arrays:  # checked by the reader (modelfile.check_aliases), as the tokens are
        vocab.aliases = dict(zip(arrays[f"{name}/aliases"].tolist(), arrays[f"{name}/alias_ids"].tolist()))
    net = StudentNet(cfg, len(vocab), len(sm["classes"]), params=arrays[f"{name}/params"])
    return Student(vocab, net, sm["classes"], sm.get("meta"), settings)


def load(path, settings=None):
    """Load a model file: a :class:`Student`, or a :class:`Bundle` when the file holds
    per-item students. Every failure is a one-line :class:`~tinykd.scoring.modelfile.ModelFileError`.
    ``settings``: the :class:`~tinykd.settings.Settings` its scorers run with (None: the default)."""
    return from_file_contents(path, *read_file(path), settings=settings)


def load_bytes(data, name="model file bytes", settings=None):
    """:func:`load` of a model file's contents (``bytes``): the same checks, the same one-line
    :class:`~tinykd.scoring.modelfile.ModelFileError` (``name`` is how it names them); never a pickle."""
    return from_file_contents(name, *read_bytes(data, name), settings=settings)


def from_file_contents(path, meta, arrays, settings=None):
    """The model of checked file contents (:func:`tinykd.scoring.modelfile.read_file`)."""
    try:
        students = {name: _build_student(name, sm, arrays, settings) for name, sm in meta["students"].items()}
    except Exception as e:  # KeyError, TypeError, ValueError from a config that does not add up
        raise ModelFileError(f"{os.fspath(path)}: invalid model contents ({e})") from None
    items = meta.get("items")
    if items is None:
        if list(students) != ["default"]:
            raise ModelFileError(f"{os.fspath(path)}: several students but no item map")
        return students["default"]
    try:
        return Bundle({items[name]: st for name, st in students.items()}, item_col=meta.get("item_col"))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{os.fspath(path)}: item map does not match the students ({e})") from None
