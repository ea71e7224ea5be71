"""How well a model agrees with human scores: ``tinykd evaluate`` and ``tinykd report``.

:func:`evaluation_report` scores rows with a :class:`~tinykd.scoring.student.Student` or a
:class:`~tinykd.scoring.student.Bundle` and compares the predictions with the human labels:
accuracy, QWK, macro-F1, per-class precision / recall / F1, the confusion matrix, per item
(for a bundle), and — with a second human rater — the human–human agreement beside the
model's on the rows both raters scored. Labels the model never saw are reported and count
as errors.

:func:`fitness_report` answers "may this scorer be used?" (``tinykd report``): the measures
of an automated-scoring evaluation (:func:`assess`: means and SDs, SMD, exact / adjacent
agreement, QWK, Pearson r, human–human agreement and the degradation, per subgroup), each
acceptance criterion of Williamson, Xi & Breyer (2012) marked met / not met, one verdict per
item, the calibration of the confidence and the human-review trade-off.
:mod:`tinykd.quality.report` renders it as one HTML page.
"""
from __future__ import annotations

import numpy as np

from tinykd.scoring.student import Bundle
from tinykd.files.csvfiles import coerce_labels, label_key, shown, shown_list


def evaluation_report(model, texts, labels, *, contexts=None, items=None, rater2=None, splits=None, split=None,
                      label_name="labels", rater2_name="rater2"):
    """The report as a dict (JSON-ready).

    ``labels`` (and ``rater2``) are cells as read from a file (numbers in any spelling
    match the model's classes); unlabeled rows are skipped and counted. ``items`` is
    required for a bundle. With ``splits`` (per-row values) only the rows whose split is
    ``split`` are evaluated. Raises ``ValueError`` when no row is left, or when the labels
    are far beyond the model's scale (:func:`check_label_set`, naming ``label_name`` or
    ``rater2_name``)."""
    from tinykd.quality.metrics import classification_details, scoring_metrics  # (scikit-learn: not for `tinykd info`)

    classes = model.classes
    rows, y_all, unlabeled = _select_rows(labels, classes, splits, split, label_name)
    r2_rows = None if rater2 is None else _rater2(rater2, classes, rows, rater2_name)
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
    if r2_rows is not None:
        both = [k for k, v in enumerate(r2_rows) if v is not None]
        r2 = [label_key(r2_rows[k]) for k in both]
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
        unseen = ", ".join(_cut(s, 40) for s in res["unseen_labels"])
        out.append(f"note: labels {unseen} are not among the model's classes; those rows always count as wrong")
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
        out.append(f"{_cut(lab):>10}{m['precision']:>11.3f}{m['recall']:>8.3f}{m['f1']:>7.3f}{m['support']:>9,}")
    out.append("")
    out.append("confusion matrix (rows: human score, columns: model score)")
    labels = [_cut(s) for s in res["labels"]]
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


# ======================================================================== tinykd report
# The acceptance criteria of Williamson, Xi & Breyer (2012), "A Framework for Evaluation and
# Use of Automated Scoring" (the thresholds ETS's RSMTool reports use).
QWK_MIN = 0.70  #: machine–human quadratic weighted kappa at least this
R_MIN = 0.70  #: machine–human Pearson r at least this
DEGRADATION_MAX = 0.10  #: machine–human QWK (and r) at most this far below human–human
SMD_MAX = 0.15  #: |SMD| at most this over all rows
GROUP_SMD_MAX = 0.10  #: |SMD| at most this within each subgroup
#: subgroups with fewer rows are listed but not judged (their SMD is too noisy to mean much)
MIN_GROUP_ROWS = 10
#: the target accuracy whose review threshold the report shows
REPORT_TARGET = 0.9
#: the most score points a report compares (a scale has a few, 0–3; an essay's 0–60 fits): its confusion
#: matrix and heat map grow with the square of the count
MAX_LABELS = 100
#: the most distinct labels beyond a model's classes that a label column may hold (scores the training rows
#: lacked); a model of more classes may meet as many more; beyond that the column is not a score
MAX_UNSEEN_LABELS = 20
#: the most groups a subgroup column may hold (gender, language, school); each group is compared with the
#: rest of the rows, so the work grows with groups × rows
MAX_GROUPS = 500
CRITERIA = {"qwk_min": QWK_MIN, "r_min": R_MIN, "degradation_max": DEGRADATION_MAX, "smd_max": SMD_MAX,
            "group_smd_max": GROUP_SMD_MAX, "min_group_rows": MIN_GROUP_ROWS,
            "source": "Williamson, Xi & Breyer (2012), A Framework for Evaluation and Use of Automated Scoring"}


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(x):
    return x is not None and x == x and abs(x) != float("inf")


def _cut(s, n=20):
    """A label as text of at most ``n`` characters (a label may be a whole answer)."""
    s = str(s)
    return s if len(s) <= n else s[:n - 1] + "…"


def check_label_set(classes, values, name="labels"):
    """Refuse labels far beyond the model's scoring scale — a wrong label column (ids, answers) or a model of
    hundreds of classes — before anything grows with the square of the label count: at most
    :data:`MAX_LABELS` classes, and at most ``max(MAX_UNSEEN_LABELS, len(classes))`` distinct ``values`` that
    are not among them (within :data:`MAX_LABELS` in all). ``name`` names the values in the message."""
    k = len(classes)
    if k > MAX_LABELS:
        raise ValueError(f"the model has {k:,} classes, more than the {MAX_LABELS} score points a report compares; "
                         "was it trained on the wrong label column?")
    known = {label_key(c) for c in classes}
    unseen = list(dict.fromkeys(key for key in (label_key(v) for v in values if v is not None) if key not in known))
    limit = min(max(MAX_UNSEEN_LABELS, k), MAX_LABELS - k)
    if len(unseen) > limit:
        raise ValueError(f"{name} holds {len(unseen):,} values that are not among the model's {k} classes "
                         f"({shown_list(map(label_key, classes), quote=False, n=10)}), e.g. {shown_list(unseen[:3])}: "
                         f"at most {limit} may lie beyond the model's classes; is it the column of human scores?")


def _select_rows(labels, classes, splits, split, name="labels"):
    """The evaluated rows (split, labelled) and their labels in the classes' own types, the label set checked
    (:func:`check_label_set`, naming ``name``); ``(rows, labels of every row, unlabeled rows skipped)``."""
    y_all = coerce_labels(labels, classes)
    rows = list(range(len(y_all)))
    if splits is not None:
        splits = [str(s).strip() for s in splits]
        rows = [i for i in rows if splits[i] == split]
        if not rows:
            raise ValueError(f"no rows with split == {shown(split)}; the split column holds "
                             f"{shown_list(sorted(set(splits)), n=10)}")
    unlabeled = sum(1 for i in rows if y_all[i] is None)
    rows = [i for i in rows if y_all[i] is not None]
    if not rows:
        raise ValueError("no rows with a label to evaluate on")
    check_label_set(classes, (y_all[i] for i in rows), name)
    return rows, y_all, unlabeled


def _rater2(rater2, classes, rows, name):
    """The second rater's labels of ``rows`` in the classes' own types, the label set checked."""
    r2_all = coerce_labels(rater2, classes)
    r2 = [r2_all[i] for i in rows]
    check_label_set(classes, r2, name)
    return r2


def _check(name, value, ok, text, **extra):
    return {"criterion": name, "value": value, "met": None if not _finite(value) else bool(ok(value)),
            "text": text, **extra}


def assess(human, machine, *, labels, ordinal=True, rater2=None, groups=None, name="model",
           min_group_rows=MIN_GROUP_ROWS):
    """The measures, criteria and verdict of one machine–human comparison (an item, or all rows).

    ``human`` / ``machine``: one score per row (numbers when ``ordinal``, any labels otherwise);
    ``labels``: the score points in order (the model's classes and any others the humans gave);
    ``rater2``: a second human's scores (None where missing); ``groups``: ``{column: values}``,
    one value per row. Measures: N, human and machine mean and SD, SMD (machine minus human),
    exact and adjacent agreement, QWK, Pearson r, accuracy, macro-F1, the confusion matrix;
    human–human QWK / r / exact agreement and the degradation; per group N, SMD, QWK, accuracy
    and the difference from the rest. Nominal labels (``ordinal=False``) get the nominal
    measures only, and no criterion applies."""
    from tinykd.quality.metrics import (classification_details, cohen_kappa, ordinal_agreement, scoring_metrics,
                          standardized_mean_difference)

    n = len(human)
    keys = [label_key(v) for v in labels]
    hk, mk = [label_key(v) for v in human], [label_key(v) for v in machine]
    m = scoring_metrics(hk, mk, labels=keys)
    unit = {"name": name, "n": n, "ordinal": bool(ordinal), "labels": keys, "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"], **classification_details(hk, mk, keys)}
    scale = [float(v) for v in labels] if ordinal else None
    if ordinal:
        h, mm = np.asarray(human, dtype=np.float64), np.asarray(machine, dtype=np.float64)
        unit.update(ordinal_agreement(h, mm, scale))
        unit["score_counts"] = {"human": [int(np.sum(h == s)) for s in scale],
                                "machine": [int(np.sum(mm == s)) for s in scale]}
    else:
        unit["exact"] = m["accuracy"]
        unit["kappa"] = cohen_kappa(hk, mk, keys)
        unit["score_counts"] = {"human": [hk.count(k) for k in keys], "machine": [mk.count(k) for k in keys]}

    if rater2 is not None:
        both = [i for i, v in enumerate(rater2) if v is not None]
        r2 = [rater2[i] for i in both]
        hh = {"n": len(both)}
        if ordinal and all(_is_number(v) for v in r2):
            sc = sorted(set(scale) | {float(v) for v in r2})
            a, b, c = (np.asarray(x, dtype=np.float64) for x in ([human[i] for i in both], r2,
                                                                   [machine[i] for i in both]))
            hum, mac = ordinal_agreement(a, b, sc), ordinal_agreement(a, c, sc)
            hh.update({"qwk": hum["qwk"], "r": hum["r"], "exact": hum["exact"],
                       "machine_qwk": mac["qwk"], "machine_r": mac["r"], "machine_exact": mac["exact"],
                       "degradation_qwk": mac["qwk"] - hum["qwk"], "degradation_r": mac["r"] - hum["r"]})
        else:
            k2 = [label_key(v) for v in r2]
            lab = keys + sorted(set(k2) - set(keys))
            a = [hk[i] for i in both]
            hh.update({"exact": float(np.mean([x == y for x, y in zip(a, k2)])) if both else float("nan"),
                       "kappa": cohen_kappa(a, k2, lab),
                       "machine_exact": float(np.mean([hk[i] == mk[i] for i in both])) if both else float("nan"),
                       "machine_kappa": cohen_kappa(a, [mk[i] for i in both], lab)})
        unit["human_human"] = hh

    unit["groups"] = {}
    for col, vals in (groups or {}).items():
        vals = [str(v).strip() if v is not None else "" for v in vals]
        out = []
        for g in sorted(set(vals)):
            idx = np.array([v == g for v in vals])
            gi, ri = np.flatnonzero(idx), np.flatnonzero(~idx)
            gm = scoring_metrics([hk[i] for i in gi], [mk[i] for i in gi], labels=keys)
            rm = scoring_metrics([hk[i] for i in ri], [mk[i] for i in ri], labels=keys) if len(ri) else None
            row = {"group": g or "(blank)", "n": int(len(gi)), "accuracy": gm["accuracy"],
                   "judged": bool(len(gi) >= min_group_rows),
                   "vs_rest": {"accuracy": gm["accuracy"] - rm["accuracy"] if rm else float("nan")}}
            if ordinal:
                sd = unit["human_sd"]
                row["smd"] = standardized_mean_difference(h[gi], mm[gi], sd_human=sd)
                row["qwk"] = gm["qwk"]
                rest_smd = standardized_mean_difference(h[ri], mm[ri], sd_human=sd) if len(ri) else float("nan")
                row["vs_rest"].update({"qwk": gm["qwk"] - rm["qwk"] if rm else float("nan"),
                                       "smd": row["smd"] - rest_smd})
            out.append(row)
        unit["groups"][col] = out
    unit["checks"] = _checks(unit) if ordinal else []
    unit["verdict"] = _verdict(unit)
    return unit


def _checks(u):
    out = [_check("qwk", u["qwk"], lambda v: v >= QWK_MIN, f"QWK ≥ {QWK_MIN:.2f}"),
           _check("r", u["r"], lambda v: v >= R_MIN, f"Pearson r ≥ {R_MIN:.2f}"),
           _check("smd", u["smd"], lambda v: abs(v) <= SMD_MAX, f"|SMD| ≤ {SMD_MAX:.2f}")]
    hh = u.get("human_human")
    if hh is None or "degradation_qwk" not in hh:
        why = "no second rater" if hh is None else "the second rater's scores are not numbers"
        out.append({"criterion": "degradation", "value": None, "met": None, "not_checked": why,
                    "text": f"QWK and r at most {DEGRADATION_MAX:.2f} below human–human"})
    else:
        for key, label in (("qwk", "QWK"), ("r", "r")):
            out.append(_check(f"degradation_{key}", hh[f"degradation_{key}"], lambda v: v >= -DEGRADATION_MAX,
                              f"{label} at most {DEGRADATION_MAX:.2f} below human–human"))
    if not u["groups"]:
        out.append({"criterion": "group_smd", "value": None, "met": None, "not_checked": "no groups",
                    "text": f"|SMD| ≤ {GROUP_SMD_MAX:.2f} in each subgroup"})
    for col, rows in u["groups"].items():
        for g in rows:
            if g["judged"]:
                out.append(_check("group_smd", g["smd"], lambda v: abs(v) <= GROUP_SMD_MAX,
                                  f"|SMD| ≤ {GROUP_SMD_MAX:.2f} in {col} = {g['group']}", group=[col, g["group"]]))
    return out


def _show(c):
    """One check as text, e.g. ``QWK 0.359 < 0.70`` or ``SMD +0.021 within ±0.15``."""
    crit, v = c["criterion"], c["value"]
    if crit == "group_smd":
        name = f"SMD in {c['group'][0]} = {c['group'][1]}"
    else:
        name = {"qwk": "QWK", "r": "Pearson r", "smd": "SMD", "degradation_qwk": "QWK degradation",
                "degradation_r": "r degradation"}[crit]
    if c["met"] is None:
        return f"{name} undefined"
    if crit in ("smd", "group_smd"):
        limit = SMD_MAX if crit == "smd" else GROUP_SMD_MAX
        return f"{name} {v:+.3f} {'within' if c['met'] else 'beyond'} ±{limit:.2f}"
    if crit.startswith("degradation"):
        return f"{name} {v:+.3f} {'≥' if c['met'] else '<'} -{DEGRADATION_MAX:.2f}"
    return f"{name} {v:.3f} {'≥' if c['met'] else '<'} {QWK_MIN if crit == 'qwk' else R_MIN:.2f}"


def _verdict(u):
    """``{"status": "met" | "not met" | "not applicable", "line": one sentence}``."""
    head = f"{u['name']} ({u['n']:,} rows)"
    if not u["ordinal"]:
        return {"status": "not applicable",
                "line": f"{head}: NO VERDICT — the scores are nominal (categories, not points on a scale), so the "
                        f"ordinal criteria (QWK, Pearson r, SMD) do not apply; accuracy {u['accuracy']:.3f}, "
                        f"Cohen's κ {u['kappa']:.3f}, macro-F1 {u['macro_f1']:.3f}"}
    checks = u["checks"]
    failed = [c for c in checks if c["met"] is False]
    undefined = [c for c in checks if c["met"] is None and "not_checked" not in c]
    met = [c for c in checks if c["met"]]
    skipped = [c for c in checks if "not_checked" in c]
    status = "not met" if failed or undefined else "met"
    parts = []
    if failed or undefined:
        parts.append("NOT MET — " + "; ".join(_show(c) for c in failed + undefined))
    else:
        parts.append("MET — every criterion checked")
    if met:
        groups = [c for c in met if c["criterion"] == "group_smd"]
        shown = [_show(c) for c in met if c["criterion"] != "group_smd"]
        if groups:
            shown.append(f"SMD within ±{GROUP_SMD_MAX:.2f} in {len(groups)} group(s)")
        parts.append("met: " + "; ".join(shown))
    if skipped:
        parts.append("not checked: " + "; ".join(f"{'degradation' if c['criterion'] == 'degradation' else 'subgroups'}"
                                                 f" ({c['not_checked']})" for c in skipped))
    use = ("may score on its own by these criteria" if status == "met"
           else "do not let it score alone: keep a human rater (or review what it flags)")
    return {"status": status, "line": f"{head}: {' | '.join(parts)} → {use}"}


def group_findings(unit):
    """One sentence per judged group whose SMD breaks the subgroup criterion, naming the direction."""
    out = []
    for col, rows in unit.get("groups", {}).items():
        for g in rows:
            if not g["judged"] or "smd" not in g or not _finite(g["smd"]) or abs(g["smd"]) <= GROUP_SMD_MAX:
                continue
            side = "lower" if g["smd"] < 0 else "higher"
            out.append(f"{col} = {g['group']} ({g['n']:,} rows): the machine scores this group {side} than the "
                       f"humans do (SMD {g['smd']:+.3f}, limit ±{GROUP_SMD_MAX:.2f}); accuracy "
                       f"{g['accuracy']:.3f}, {g['vs_rest']['accuracy']:+.3f} against the rest")
    return out


def _downsample(xs, k=200):
    if len(xs) <= k:
        return list(range(len(xs)))
    return sorted(set(np.linspace(0, len(xs) - 1, k).round().astype(int).tolist()))


def fitness_report(model, texts, labels, *, contexts=None, items=None, rater2=None, groups=None, splits=None,
                   split=None, nominal=False, target_accuracy=REPORT_TARGET, min_group_rows=MIN_GROUP_ROWS,
                   name="model", label_name="labels", rater2_name="rater2"):
    """May this scorer be used? The report of ``tinykd report`` as a dict (JSON-ready).

    Rows as :func:`evaluation_report` takes them (``labels`` and ``rater2`` as read from a
    file; ``items`` for a bundle; ``splits`` / ``split``); ``groups``: ``{column: values}``
    per row (gender, language status, school …). Numeric labels are taken as points on a
    scale (ordinal) unless ``nominal``; text labels are nominal.

    Returns ``units`` — one :func:`assess` per item of a bundle and one over all rows (the
    only one for a single student), each with its criteria and verdict — plus
    ``calibration`` (ECE and reliability bins on these rows before and after the model's
    temperature) and ``review`` (share flagged against accuracy on the rest, and the
    threshold ``tinykd score --target-accuracy target_accuracy`` would choose on the
    model's validation rows, applied to these rows). ``name`` names a single student's unit. Labels far
    beyond the model's scale are refused (:func:`check_label_set`, naming ``label_name`` or ``rater2_name``),
    and so is a group column of more than :data:`MAX_GROUPS` groups."""
    from tinykd.scoring.calibration import check_target

    check_target(target_accuracy)
    classes = model.classes
    rows, y_all, unlabeled = _select_rows(labels, classes, splits, split, label_name)
    r2 = None if rater2 is None else _rater2(rater2, classes, rows, rater2_name)
    grp = _groups_of(groups, rows)
    bundle = isinstance(model, Bundle)
    items, p_cal, p_raw = _probabilities(model, texts, contexts, items, rows)
    y = [y_all[i] for i in rows]
    pred = [classes[k] for k in p_cal.argmax(axis=1)]

    known = {label_key(c) for c in classes}
    unseen = [v for v in dict.fromkeys(y) if label_key(v) not in known]
    ordinal = not nominal and all(_is_number(c) for c in classes) and all(_is_number(v) for v in y)
    scale = list(classes) + unseen
    if ordinal:
        scale = sorted(scale)

    def unit(idx, name):
        take = lambda xs: None if xs is None else [xs[i] for i in idx]  # noqa: E731
        return assess(take(y), take(pred), labels=scale, ordinal=ordinal, rater2=take(r2),
                      groups={c: take(v) for c, v in grp.items()}, name=name, min_group_rows=min_group_rows)

    units = []
    if bundle:
        for it in model.items:
            idx = [k for k, v in enumerate(items) if v == it]
            if idx:
                units.append(unit(idx, f"item {it}"))
    units.append(unit(list(range(len(y))), "all items" if bundle else name))
    col = {label_key(c): k for k, c in enumerate(classes)}
    yi = np.array([col.get(label_key(v), -1) for v in y])  # a label the model lacks: -1, always wrong
    return {"n": len(rows), "unlabeled_rows_skipped": unlabeled, "kind": "bundle" if bundle else "student",
            "ordinal": ordinal, "labels": [label_key(v) for v in scale], "unseen_labels": [label_key(v) for v in unseen],
            "criteria": CRITERIA, "units": units, "calibration": _calibration(model, p_raw, p_cal, yi),
            "review": _review(model, p_cal, yi, target_accuracy), "groups": list(grp), "rater2": rater2 is not None}


def _groups_of(groups, rows):
    """``{column: its values of the rows}``, each column at most :data:`MAX_GROUPS` groups (an id is no group)."""
    out = {}
    for col, vals in (groups or {}).items():
        out[col] = [vals[i] for i in rows]
        distinct = list(dict.fromkeys("" if v is None else str(v).strip() for v in out[col]))
        if len(distinct) > MAX_GROUPS:
            raise ValueError(f"group column {col!r} holds {len(distinct):,} groups, more than the {MAX_GROUPS} a "
                             f"report compares (e.g. {shown_list(distinct[:3])}); is it a column "
                             "of subgroups (gender, language, school)?")
    return out


def _probabilities(model, texts, contexts, items, rows):
    """``(items of the rows or None, calibrated (n, K), uncalibrated (n, K))`` for the chosen ``rows``."""
    texts = [texts[i] for i in rows]
    ctx = None if contexts is None else [contexts[i] for i in rows]
    if not isinstance(model, Bundle):
        return None, model.predict_proba(texts, ctx), model.predict_proba(texts, ctx, calibrated=False)
    if items is None:
        raise ValueError("this model holds per-item students; give the items")
    items = [str(items[i]).strip() for i in rows]
    return (items, model.predict_proba_matrix(texts, items, ctx, model.classes),
            model.predict_proba_matrix(texts, items, ctx, model.classes, calibrated=False))


def _calibration(model, p_raw, p_cal, yi):
    """ECE and reliability bins on these rows before and after the temperature, and the stored calibration."""
    from tinykd.scoring.calibration import confidence_and_correct, expected_calibration_error, reliability_bins

    cal = {}
    for when, p in (("before", p_raw), ("after", p_cal)):
        conf, ok = confidence_and_correct(p, yi)
        cal[when] = {"ece": expected_calibration_error(conf, ok), "bins": reliability_bins(conf, ok)}
    students = model.students if isinstance(model, Bundle) else {"model": model}
    cal["temperature"] = {k: (st.meta.get("calibration") or {}).get("temperature") for k, st in students.items()}
    cal["stored"] = {k: st.meta.get("calibration") for k, st in students.items()}
    return cal


def _review(model, p_cal, yi, target_accuracy):
    """Share flagged against accuracy on the rest (a curve of at most 200 points and steps at 0–50 %
    flagged), and the threshold chosen on the model's validation rows for ``target_accuracy``, applied here."""
    from tinykd.scoring.calibration import confidence_and_correct, review_curve, review_threshold

    conf, ok = confidence_and_correct(p_cal, yi)
    thr, flagged, acc = review_curve(conf, ok)
    keep = _downsample(thr)
    review = {"curve": {"threshold": thr[keep].tolist(), "flagged": flagged[keep].tolist(),
                        "accuracy": acc[keep].tolist()},
              "accuracy_all": float(ok.mean()), "target": float(target_accuracy), "validation": None,
              "steps": []}
    for share in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):  # the least flagging that reaches each share
        i = int(np.searchsorted(flagged, share - 1e-12))
        if i < len(thr):
            review["steps"].append({"threshold": float(thr[i]), "flagged": float(flagged[i]),
                                    "accuracy": float(acc[i])})
    outcomes = model.validation_outcomes()
    if outcomes is not None:
        try:
            choice = review_threshold(*outcomes, target_accuracy)
        except ValueError as e:
            review["validation"] = {"error": str(e), "n": int(len(outcomes[0]))}
        else:
            here = conf < choice["threshold"]
            review["validation"] = {**choice, "here_flagged": float(here.mean()),
                                    "here_accuracy": float(ok[~here].mean()) if (~here).any() else float("nan")}
    return review


def format_verdicts(res):
    """The lines ``tinykd report`` prints: one verdict per item (and overall), the groups that
    break the subgroup criterion, and the calibration on these rows."""
    out = [u["verdict"]["line"] for u in res["units"]]
    for u in res["units"]:
        out += ["  " + s for s in group_findings(u)]
    cal = res["calibration"]
    stored = [c for c in cal["stored"].values() if c and c.get("temperature")]
    if len(stored) == 1 and len(cal["stored"]) == 1:
        from tinykd.scoring.calibration import stored_fit

        c, (n, before, after) = stored[0], stored_fit(stored[0])
        tdesc = f"temperature {c['temperature']:.3f} fitted on {n} validation rows, validation ECE {before} → {after}"
    elif stored:
        ts = [c["temperature"] for c in stored]
        tdesc = f"{len(ts)} of {len(cal['stored'])} students calibrated, temperatures {min(ts):.2f}–{max(ts):.2f}"
    else:
        tdesc = "the model is not calibrated: confidence is the raw softmax"
    out.append(f"calibration ({tdesc}): ECE on these rows {cal['before']['ece']:.3f} → {cal['after']['ece']:.3f}")
    v = res["review"].get("validation")
    if v and "threshold" in v:
        rest = (f"the rest are {v['here_accuracy']:.1%} right" if v["here_flagged"] < 1
                else "nothing is left to the machine")
        out.append(f"review: --target-accuracy {v['target']:g} → --review-below {v['threshold']:.3f} (flags "
                   f"{v['flagged']:.0%} of the validation rows); on these rows it flags {v['here_flagged']:.0%}, "
                   + rest)
    return out
