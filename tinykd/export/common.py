"""What both exits of ``tinykd export`` carry beside the weights: one student's classes, calibration
temperature, review threshold, vocabulary and tokenizer settings, as plain JSON-ready data.

An app that scores with an exported student must

1. tokenize as :func:`tinykd.scoring.text.tokenize` does: lower-case the text (full Unicode lower-casing,
   as Python's ``str.lower`` and JavaScript's ``toLowerCase``), then take every maximal run of word
   characters — letters (``\\p{L}``), numbers (``\\p{N}``) and ``_``; everything else (spaces,
   punctuation, apostrophes, combining marks, emoji) separates words;
2. map each word to its id in ``tokens`` (``OOV = 1`` when absent);
3. with a context (``uses_context``): ``context ids + [SEP = 2] + answer ids``, the context cut to
   ``max(max_len − 1 − len(answer), max_len // 2)`` ids first, then the whole cut to ``max_len``;
   without one: the answer's ids cut to ``max_len``;
4. score the ids and their true length; the probabilities are ``softmax(logits / temperature)``;
   the prediction is ``classes[argmax]`` (its name for people: ``label_names[argmax]``) and
   ``needs_review`` is ``max probability < review_below`` (what ``tinykd score`` writes).

Nothing here imports an optional package.
"""
from __future__ import annotations

import json

from tinykd._version import __version__
from tinykd.scoring.modelmeta import check_classes
from tinykd.scoring.scorer import REVIEW_BELOW, decide
from tinykd.scoring.text import OOV, PAD, SEP, TOKEN_PATTERN

HOW_TO_TOKENIZE = (
    "lower-case the text (full Unicode lower-casing: Python str.lower, JavaScript toLowerCase); the tokens are "
    "the maximal runs of letters (\\p{L}), numbers (\\p{N}) and '_' — Python's re (?u)\\b\\w+\\b; map each to "
    "its index in 'tokens', else to its id in 'aliases' (a word outside the vocabulary that reads as a vocabulary "
    "word's id), else 1 = <oov>; with a context: context ids cut to "
    "max(max_len - 1 - len(answer), max_len // 2), then [2 = <sep>], then the answer ids, the whole cut to "
    "max_len; without: the answer ids cut to max_len. An empty answer has length 0.")


def _plain(v):
    """A class label as JSON can hold it (NumPy numbers become Python numbers)."""
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


def check_review_below(review_below):
    """The review threshold, checked as ``tinykd score`` checks it (``None``: the default)."""
    import numpy as np

    review_below = REVIEW_BELOW if review_below is None else float(review_below)
    decide(np.zeros((0, 2)), review_below)
    return review_below


def describe_student(student, review_below=None):
    """The JSON-ready description of one student (everything but the network's weights)."""
    v = student.vocab
    classes = [_plain(c) for c in student.classes]
    check_classes(classes, "the student")  # what the model file's reader checks: a student built in Python too
    out = {
        "classes": classes,
        "label_names": student.label_names,
        "temperature": student.temperature,
        "review_below": check_review_below(review_below),
        "uses_context": student.uses_context,
        "config": {k: _plain(x) for k, x in student.net.config.items()},
        "tokenizer": {"lowercase": True, "token_pattern": TOKEN_PATTERN, "pad": PAD, "oov": OOV, "sep": SEP,
                      "max_len": v.max_len, "how": HOW_TO_TOKENIZE},
        "tokens": list(v.tokens),
        "aliases": dict(v.aliases),
    }
    if student.context_text is not None:  # the one context its rows shared: the page shows and fills it in
        out["context_text"] = student.context_text
    return out


def model_items(model):
    """``[(item or None, student)]``: one entry for a student, one per item for a bundle."""
    from tinykd.scoring.student import Bundle

    if isinstance(model, Bundle):
        return list(model.students.items())
    return [(None, model)]


def json_bytes(obj):
    return (json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=False) + "\n").encode("utf-8")


def header(model):
    from tinykd.scoring.student import Bundle

    return {"tinykd_version": __version__,
            "item_col": model.item_col if isinstance(model, Bundle) else None,
            "text_col": (model.meta.get("columns") or {}).get("text"),
            "context_col": (model.meta.get("columns") or {}).get("context") if model.uses_context else None}
