"""Per-item students saved together: each item (question) of an assessment has its own rubric.

A :class:`Bundle` maps an item value (as a string) to a :class:`~tinykd.student.Student`
and routes each row to its item's student. A row whose item has no student
is an error that names the unknown items — never a silent guess.
"""
from __future__ import annotations

import numpy as np


class UnknownItemError(ValueError):
    """Rows name items for which the bundle has no student."""


class Bundle:
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

    def predict_proba_matrix(self, texts, items, contexts=None, classes=None):
        """``(n, len(classes))`` float32 over :attr:`classes` (or ``classes``); a class an
        item's student does not know has probability 0 for that item's rows."""
        classes = self.classes if classes is None else list(classes)
        col = {repr(c): k for k, c in enumerate(classes)}
        texts = list(texts)
        out = np.zeros((len(texts), len(classes)), dtype=np.float32)
        for it, idx in self._groups(items).items():
            st = self.students[it]
            ctx = None if contexts is None else [contexts[i] for i in idx]
            proba = st.predict_proba([texts[i] for i in idx], ctx)
            cols = [col[repr(c)] for c in st.classes]
            out[np.ix_(idx, cols)] = proba
        return out

    def _groups(self, items):
        items = np.asarray([str(i).strip() for i in items], dtype=object)
        unknown = sorted(set(items.tolist()) - set(self.students))
        if unknown:
            raise UnknownItemError(f"no student for item(s) {', '.join(map(repr, unknown[:10]))}"
                                   f"{' …' if len(unknown) > 10 else ''}; the model knows {', '.join(self.items)}")
        return {it: np.flatnonzero(items == it) for it in self.students if (items == it).any()}

    def predict_proba(self, texts, items, contexts=None):
        """Per-row probabilities: a list of arrays (items may have different class sets)."""
        texts = list(texts)
        out = [None] * len(texts)
        for it, idx in self._groups(items).items():
            ctx = None if contexts is None else [contexts[i] for i in idx]
            proba = self.students[it].predict_proba([texts[i] for i in idx], ctx)
            for j, i in enumerate(idx):
                out[i] = proba[j]
        return out

    def predict(self, texts, items, contexts=None):
        texts = list(texts)
        out = [None] * len(texts)
        for it, idx in self._groups(items).items():
            st = self.students[it]
            ctx = None if contexts is None else [contexts[i] for i in idx]
            for i, lab in zip(idx, st.predict([texts[i] for i in idx], ctx)):
                out[i] = lab
        return out

    def save(self, path):
        from .io import save

        save(self, path)


def as_students(model):
    """``({file name: Student}, extra meta)`` for :func:`tinykd.io.save`."""
    if isinstance(model, Bundle):
        names = {f"item{k}": it for k, it in enumerate(model.students)}
        return ({n: model.students[it] for n, it in names.items()},
                {"item_col": model.item_col, "items": names})
    return {"default": model}, {}
