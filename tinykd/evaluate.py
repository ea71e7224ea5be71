"""How well a model agrees with human scores: the evaluation report of ``tinykd evaluate``.

:func:`evaluation_report` scores rows with a :class:`~tinykd.student.Student` or a
:class:`~tinykd.student.Bundle` and compares the predictions with the human labels:
accuracy, QWK, macro-F1, per-class precision / recall / F1, the confusion matrix, per item
(for a bundle), and — with a second human rater — the human–human agreement beside the
model's on the rows both raters scored. Labels the model never saw are reported and count
as errors.
"""
from __future__ import annotations

from .student import Bundle
from .tables import coerce_labels, label_key


def evaluation_report(model, texts, labels, *, contexts=None, items=None, rater2=None, splits=None, split=None):
    """The report as a dict (JSON-ready).

    ``labels`` (and ``rater2``) are cells as read from a file (numbers in any spelling
    match the model's classes); unlabeled rows are skipped and counted. ``items`` is
    required for a bundle. With ``splits`` (per-row values) only the rows whose split is
    ``split`` are evaluated. Raises ``ValueError`` when no row is left."""
    from .metrics import classification_details, scoring_metrics  # (scikit-learn: not for `tinykd info`)

    classes = model.classes
    y_all = coerce_labels(labels, classes)
    rows = list(range(len(y_all)))
    if splits is not None:
        splits = [str(s).strip() for s in splits]
        rows = [i for i in rows if splits[i] == split]
        if not rows:
            raise ValueError(f"no rows with split == {split!r}; the split column holds "
                             f"{', '.join(map(repr, sorted(set(splits))[:10]))}")
    unlabeled = sum(1 for i in rows if y_all[i] is None)
    rows = [i for i in rows if y_all[i] is not None]
    if not rows:
        raise ValueError("no rows with a label to evaluate on")
    texts = [texts[i] for i in rows]
    ctx = None if contexts is None else [contexts[i] for i in rows]
    if isinstance(model, Bundle):
        if items is None:
            raise ValueError("this model holds per-item students; give the items")
        items = [items[i] for i in rows]
        pred = model.predict(texts, items, ctx)
    else:
        items = None
        pred = model.predict(texts, ctx)
    y = [label_key(y_all[i]) for i in rows]
    p = [label_key(v) for v in pred]
    known = [label_key(c) for c in classes]
    unseen = sorted(set(y) - set(known))
    labels_all = known + unseen
    res = {"n": len(rows), "unlabeled_rows_skipped": unlabeled, "labels": labels_all,
           "model_vs_human": scoring_metrics(y, p, labels=labels_all),
           **classification_details(y, p, labels_all)}
    if unseen:
        res["unseen_labels"] = unseen
    if rater2 is not None:
        r2_all = coerce_labels(rater2, classes)
        both = [k for k, i in enumerate(rows) if r2_all[i] is not None]
        r2 = [label_key(r2_all[rows[k]]) for k in both]
        lab2 = labels_all + sorted(set(r2) - set(labels_all))
        res["human_vs_human"] = scoring_metrics([y[k] for k in both], r2, labels=lab2)
        res["model_vs_human_same_rows"] = scoring_metrics([y[k] for k in both], [p[k] for k in both], labels=lab2)
    if items is not None:
        per = {}
        for k, it in enumerate(items):
            per.setdefault(str(it).strip(), []).append(k)
        res["per_item"] = {it: scoring_metrics([y[k] for k in ks], [p[k] for k in ks], labels=labels_all)
                           for it, ks in sorted(per.items())}
    return res


def format_metrics(m):
    """One line: accuracy, QWK, macro-F1 and the row count."""
    if not m or not m.get("n"):
        return "no validation rows"
    f3 = lambda v: "?" if v is None else f"{v:.3f}"  # noqa: E731 (a model file may hold null)
    return f"accuracy {f3(m.get('accuracy'))}  QWK {f3(m.get('qwk'))}  macro-F1 {f3(m.get('macro_f1'))}  ({m['n']:,} rows)"


def format_report(res, rater2_name=None):
    """The report as the lines ``tinykd evaluate`` prints."""
    out = []
    if res.get("unseen_labels"):
        out.append(f"note: labels {', '.join(res['unseen_labels'])} are not among the model's classes; "
                   "those rows always count as wrong")
    out.append(f"{'':22}{'rows':>7}{'accuracy':>10}{'QWK':>8}{'macro-F1':>10}")

    def line(name, m):
        out.append(f"{name:22}{m['n']:>7,}{m['accuracy']:>10.3f}{m['qwk']:>8.3f}{m['macro_f1']:>10.3f}")

    line("model vs human", res["model_vs_human"])
    if "human_vs_human" in res:
        line("  same rows", res["model_vs_human_same_rows"])
        line(f"human vs {rater2_name or 'rater 2'}", res["human_vs_human"])
    out.append("")
    out.append(f"{'class':>10}{'precision':>11}{'recall':>8}{'F1':>7}{'support':>9}")
    for lab, m in res["per_class"].items():
        out.append(f"{lab:>10}{m['precision']:>11.3f}{m['recall']:>8.3f}{m['f1']:>7.3f}{m['support']:>9,}")
    out.append("")
    out.append("confusion matrix (rows: human score, columns: model score)")
    labels = res["labels"]
    w = max(6, max(len(s) for s in labels) + 2)
    out.append(" " * w + "".join(f"{s:>{w}}" for s in labels))
    for s, row in zip(labels, res["confusion_matrix"]):
        out.append(f"{s:>{w}}" + "".join(f"{v:>{w},}" for v in row))
    if "per_item" in res:
        out.append("")
        out.append(f"{'item':22}{'rows':>7}{'accuracy':>10}{'QWK':>8}{'macro-F1':>10}")
        for it, m in res["per_item"].items():
            line(str(it)[:21], m)
    return out
