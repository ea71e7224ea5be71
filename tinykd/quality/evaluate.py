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
           "label_names": {k: v for k, v in _names_of(model).items() if v != k},
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
    names = res.get("label_names") or {}
    out.append(f"{'class':>10}{'precision':>11}{'recall':>8}{'F1':>7}{'support':>9}" + ("  name" if names else ""))
    for lab, m in res["per_class"].items():
        out.append(f"{_cut(lab):>10}{m['precision']:>11.3f}{m['recall']:>8.3f}{m['f1']:>7.3f}{m['support']:>9,}"
                   + (f"  {_cut(names.get(lab, ''), 40)}" if names else ""))
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
#: units (an item, all rows) of fewer answers get no verdict: below it the 95 % interval of QWK is wider than
#: ±0.10 on 3- and 4-point scales near the 0.70 criterion (benchmarks/results/report_min_answers.md)
MIN_ANSWERS = 175
#: a student that gives one score to at least this share of the answers is said to be a one-score scorer
ONE_SCORE_SHARE = 0.95
#: the misjudged answers of highest confidence the report shows (with their words' weights when the model explains)
MISJUDGED_SHOWN = 8
CRITERIA = {"qwk_min": QWK_MIN, "r_min": R_MIN, "degradation_max": DEGRADATION_MAX, "smd_max": SMD_MAX,
            "group_smd_max": GROUP_SMD_MAX, "min_group_rows": MIN_GROUP_ROWS, "min_answers": MIN_ANSWERS,
            "interval": "95 % bootstrap (1,000 resamples of the answers, seed 0)",
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


#: each criterion's acceptable region [low, high] of its value
REGIONS = {"qwk": (QWK_MIN, np.inf), "r": (R_MIN, np.inf), "smd": (-SMD_MAX, SMD_MAX),
           "degradation_qwk": (-DEGRADATION_MAX, np.inf), "degradation_r": (-DEGRADATION_MAX, np.inf),
           "group_smd": (-GROUP_SMD_MAX, GROUP_SMD_MAX)}


def judge(value, interval, region):
    """One criterion from its point estimate and its 95 % interval: ``"met"`` when the whole interval lies in
    ``region`` (low, high), ``"not met"`` when it lies wholly outside it, ``"uncertain"`` when it straddles a
    bound (or could not be drawn), ``"undefined"`` when the value itself is undefined."""
    if not _finite(value):
        return "undefined"
    lo, hi = interval if interval is not None else (float("nan"), float("nan"))
    if not (_finite(lo) and _finite(hi)):
        return "uncertain"
    low, high = region
    if lo >= low and hi <= high:
        return "met"
    if hi < low or lo > high:
        return "not met"
    return "uncertain"


def _check(name, value, interval, text, region=None, **extra):
    status = judge(value, interval, region or REGIONS[name])
    return {"criterion": name, "value": value, "interval": interval, "status": status,
            "met": {"met": True, "not met": False}.get(status), "text": text, **extra}


def _one_score(counts, keys):
    """``{"score", "share"}`` when one score is at least :data:`ONE_SCORE_SHARE` of ``counts``, else None."""
    counts = np.asarray(counts, dtype=np.float64)
    if not counts.sum():
        return None
    k = int(counts.argmax())
    share = float(counts[k] / counts.sum())
    return {"score": keys[k], "share": share} if share >= ONE_SCORE_SHARE else None


def _baseline(human, keys, scale, hk):
    """The majority-score baseline: always the most frequent human score of these rows (the best any
    one-score scorer could do on them), with the student's measures beside which it is shown."""
    from tinykd.quality.metrics import ordinal_agreement

    counts = [hk.count(k) for k in keys]
    k = int(np.argmax(counts))
    base = {"score": keys[k], "exact": counts[k] / max(len(hk), 1)}
    if scale is not None:
        m = ordinal_agreement(np.asarray(human, dtype=np.float64), np.full(len(human), scale[k]), scale)
        base.update({key: m[key] for key in ("exact", "adjacent", "qwk", "r", "smd")})
        base["qwk"] = 0.0  # one score: no agreement beyond chance, by definition
    return base


def assess(human, machine, *, labels, ordinal=True, rater2=None, groups=None, name="model",
           min_group_rows=MIN_GROUP_ROWS, min_answers=MIN_ANSWERS, names=None, human_human=None):
    """The measures, criteria and verdict of one machine–human comparison (an item, or all rows).

    ``human`` / ``machine``: one score per row (numbers when ``ordinal``, any labels otherwise);
    ``labels``: the score points in order (the model's classes and any others the humans gave);
    ``rater2``: a second human's scores (None where missing); ``groups``: ``{column: values}``,
    one value per row; ``names``: ``{score key: its name}`` (the rubric's words), shown in the verdict;
    ``human_human``: the human–human agreement measured on other rows of the same item
    (:func:`human_human_on`), used for the degradation when none of these rows has a second score (ASAP-SAS
    has ``score2`` on its training rows only). Measures: N, human and machine mean and SD, SMD (machine minus human),
    exact and adjacent agreement, QWK, Pearson r, accuracy, macro-F1, the confusion matrix, each ordinal one
    with its 95 % bootstrap interval (``intervals``); the majority-score ``baseline``; ``one_score`` when
    the machine gives one score to nearly every answer; human–human QWK / r / exact agreement and the
    degradation; per group N, SMD, QWK, accuracy and the difference from the rest. A unit of fewer than
    ``min_answers`` rows gets no verdict. Nominal labels (``ordinal=False``) get the nominal
    measures only, and no criterion applies."""
    from tinykd.quality.metrics import (classification_details, cohen_kappa, ordinal_agreement, ordinal_intervals,
                                        scoring_metrics)

    n = len(human)
    keys = [label_key(v) for v in labels]
    hk, mk = [label_key(v) for v in human], [label_key(v) for v in machine]
    m = scoring_metrics(hk, mk, labels=keys)
    unit = {"name": name, "n": n, "ordinal": bool(ordinal), "labels": keys, "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"], "min_answers": int(min_answers),
            "names": {label_key(k): str(v) for k, v in (names or {}).items()},
            **classification_details(hk, mk, keys)}
    scale = [float(v) for v in labels] if ordinal else None
    if ordinal:
        h, mm = np.asarray(human, dtype=np.float64), np.asarray(machine, dtype=np.float64)
        unit.update(ordinal_agreement(h, mm, scale))
        unit["intervals"] = ordinal_intervals(h, mm, scale)
        unit["score_counts"] = {"human": [int(np.sum(h == s)) for s in scale],
                                "machine": [int(np.sum(mm == s)) for s in scale]}
    else:
        unit["exact"] = m["accuracy"]
        unit["kappa"] = cohen_kappa(hk, mk, keys)
        unit["score_counts"] = {"human": [hk.count(k) for k in keys], "machine": [mk.count(k) for k in keys]}
    unit["baseline"] = _baseline(human, keys, scale, hk)
    unit["one_score"] = _one_score(unit["score_counts"]["machine"], keys)
    if human_human is not None and ordinal and (rater2 is None or all(v is None for v in rater2)):
        unit["human_human"] = _reference_human_human(unit, human_human)
    elif rater2 is not None:
        unit["human_human"] = _human_human(human, machine, rater2, hk, mk, keys, scale)
    unit["groups"] = {col: _group_rows(vals, unit, hk, mk, keys, min_group_rows, human, machine)
                      for col, vals in (groups or {}).items()}
    unit["checks"] = _checks(unit) if ordinal else []
    unit["verdict"] = _verdict(unit)
    return unit


def _human_human(human, machine, rater2, hk, mk, keys, scale):
    """Human–human agreement on the rows both humans scored, the machine's on the same rows, the degradation
    (with its bootstrap intervals when the scores are numbers)."""
    from tinykd.quality.metrics import cohen_kappa, degradation_intervals, ordinal_agreement

    both = [i for i, v in enumerate(rater2) if v is not None]
    r2 = [rater2[i] for i in both]
    hh = {"n": len(both)}
    if scale is not None and all(_is_number(v) for v in r2):
        sc = sorted(set(scale) | {float(v) for v in r2})
        a, b, c = (np.asarray(x, dtype=np.float64) for x in ([human[i] for i in both], r2,
                                                               [machine[i] for i in both]))
        hum, mac = ordinal_agreement(a, b, sc), ordinal_agreement(a, c, sc)
        hh.update({"qwk": hum["qwk"], "r": hum["r"], "exact": hum["exact"],
                   "machine_qwk": mac["qwk"], "machine_r": mac["r"], "machine_exact": mac["exact"],
                   "degradation_qwk": mac["qwk"] - hum["qwk"], "degradation_r": mac["r"] - hum["r"]})
        hh["intervals"] = degradation_intervals(a, b, c, sc) if both else {}
    else:
        k2 = [label_key(v) for v in r2]
        lab = keys + sorted(set(k2) - set(keys))
        a = [hk[i] for i in both]
        hh.update({"exact": float(np.mean([x == y for x, y in zip(a, k2)])) if both else float("nan"),
                   "kappa": cohen_kappa(a, k2, lab),
                   "machine_exact": float(np.mean([hk[i] == mk[i] for i in both])) if both else float("nan"),
                   "machine_kappa": cohen_kappa(a, [mk[i] for i in both], lab)})
    return hh


def human_human_on(human, rater2, labels, where):
    """The human–human agreement (``n``, ``qwk``, ``r``, ``exact``) of the rows where both humans scored (cells
    None where a rater gave none; numbers on the scale ``labels``), described by ``where`` (e.g. "the item's
    training and validation rows"), for :func:`assess`'s ``human_human``; None when no row has both."""
    from tinykd.quality.metrics import ordinal_agreement

    both = [i for i, (a, b) in enumerate(zip(human, rater2)) if a is not None and b is not None]
    if not both:
        return None
    a, b = (np.asarray([x[i] for i in both], dtype=np.float64) for x in (human, rater2))
    m = ordinal_agreement(a, b, sorted({float(v) for v in labels} | set(a.tolist()) | set(b.tolist())))
    return {"n": len(both), "qwk": m["qwk"], "r": m["r"], "exact": m["exact"], "rows": str(where)}


def _reference_human_human(unit, ref):
    """The human–human block of ``unit`` from a figure measured on other rows (``ref``): the degradation is
    the machine's QWK and r here minus the humans' there; its interval the machine's interval, shifted (the
    humans' own uncertainty, on thousands of rows, is left out)."""
    hh = {"n": ref["n"], "qwk": ref["qwk"], "r": ref["r"], "exact": ref["exact"], "rows": ref["rows"],
          "machine_qwk": unit["qwk"], "machine_r": unit["r"], "machine_exact": unit["exact"]}
    hh.update({f"degradation_{k}": unit[k] - ref[k] for k in ("qwk", "r")})
    hh["intervals"] = {f"degradation_{k}": [v - ref[k] for v in unit["intervals"][k]] for k in ("qwk", "r")}
    return hh


def _group_rows(vals, unit, hk, mk, keys, min_group_rows, human, machine):
    """One row per group of a group column: N, accuracy, SMD (with its interval) and QWK, against the rest."""
    from tinykd.quality.metrics import group_smd_interval, scoring_metrics, standardized_mean_difference

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
        if unit["ordinal"]:
            h, mm = np.asarray(human, dtype=np.float64), np.asarray(machine, dtype=np.float64)
            sd = unit["human_sd"]
            row["smd"] = standardized_mean_difference(h[gi], mm[gi], sd_human=sd)
            row["smd_interval"] = group_smd_interval(h, mm, idx) if row["judged"] else [float("nan")] * 2
            row["qwk"] = gm["qwk"]
            rest_smd = standardized_mean_difference(h[ri], mm[ri], sd_human=sd) if len(ri) else float("nan")
            row["vs_rest"].update({"qwk": gm["qwk"] - rm["qwk"] if rm else float("nan"),
                                   "smd": row["smd"] - rest_smd})
        out.append(row)
    return out


def _checks(u):
    iv = u["intervals"]
    out = [_check("qwk", u["qwk"], iv["qwk"], f"QWK ≥ {QWK_MIN:.2f}"),
           _check("r", u["r"], iv["r"], f"Pearson r ≥ {R_MIN:.2f}"),
           _check("smd", u["smd"], iv["smd"], f"|SMD| ≤ {SMD_MAX:.2f}")]
    hh = u.get("human_human")
    if hh is None or "degradation_qwk" not in hh:
        why = "no second rater" if hh is None else "the second rater's scores are not numbers"
        out.append({"criterion": "degradation", "value": None, "met": None, "status": "not checked",
                    "not_checked": why, "text": f"QWK and r at most {DEGRADATION_MAX:.2f} below human–human"})
    else:
        where = f" (human–human on {hh['rows']}, {hh['n']:,} rows)" if "rows" in hh else ""
        for key, label in (("qwk", "QWK"), ("r", "r")):
            out.append(_check(f"degradation_{key}", hh[f"degradation_{key}"],
                              hh.get("intervals", {}).get(f"degradation_{key}"),
                              f"{label} at most {DEGRADATION_MAX:.2f} below human–human{where}"))
    if not u["groups"]:
        out.append({"criterion": "group_smd", "value": None, "met": None, "status": "not checked",
                    "not_checked": "no groups", "text": f"|SMD| ≤ {GROUP_SMD_MAX:.2f} in each subgroup"})
    for col, rows in u["groups"].items():
        for g in rows:
            if g["judged"]:
                out.append(_check("group_smd", g["smd"], g["smd_interval"],
                                  f"|SMD| ≤ {GROUP_SMD_MAX:.2f} in {col} = {g['group']}", group=[col, g["group"]]))
    return out


def _ci(iv):
    return "" if iv is None or not all(_finite(x) for x in iv) else f" [{iv[0]:.3f}, {iv[1]:.3f}]"


def _show(c):
    """One check as text with its 95 % interval, e.g. ``QWK 0.359 [0.291, 0.428] < 0.70`` or
    ``SMD +0.021 [-0.062, 0.104] within ±0.15``; an uncertain one says which bound its interval straddles."""
    crit, v, st = c["criterion"], c["value"], c["status"]
    if crit == "group_smd":
        name = f"SMD in {c['group'][0]} = {c['group'][1]}"
    else:
        name = {"qwk": "QWK", "r": "Pearson r", "smd": "SMD", "degradation_qwk": "QWK degradation",
                "degradation_r": "r degradation"}[crit]
    if st == "undefined":
        return f"{name} undefined"
    ci = _ci(c.get("interval"))
    if crit in ("smd", "group_smd"):
        limit = SMD_MAX if crit == "smd" else GROUP_SMD_MAX
        word = {"met": "within", "not met": "beyond"}.get(st, "straddles")
        return f"{name} {v:+.3f}{ci} {word} ±{limit:.2f}"
    bound = -DEGRADATION_MAX if crit.startswith("degradation") else QWK_MIN if crit == "qwk" else R_MIN
    word = {"met": "≥", "not met": "<"}.get(st, "straddles")
    return f"{name} {v:+.3f}{ci} {word} {bound:.2f}" if crit.startswith("degradation") else \
        f"{name} {v:.3f}{ci} {word} {bound:.2f}"


def score_name(key, names):
    """A score as the report shows it: ``2 (incorrect)`` with a name, ``2`` without."""
    name = (names or {}).get(key)
    return str(key) if name is None or str(name) == str(key) else f"{key} ({name})"


def _extras(u):
    """The verdict line's words on a one-score student and the majority-score baseline."""
    out = []
    one, base, names = u.get("one_score"), u["baseline"], u.get("names")
    if one:
        out.append(f"it gives one score, {score_name(one['score'], names)}, to {one['share']:.0%} of the "
                   "answers: a one-score scorer, whatever its other numbers say")
    out.append(f"majority-score baseline, always {score_name(base['score'], names)}: exact agreement "
               f"{base['exact']:.3f} against the student's {u['exact']:.3f}")
    return out


def _verdict(u):
    """``{"status": "met" | "not met" | "uncertain" | "too few" | "not applicable", "line": one sentence}``:
    met only when every checked criterion's 95 % interval clears it; not met when one lies wholly on the wrong
    side (or a measure is undefined); uncertain otherwise; too few below the unit's ``min_answers``."""
    head = f"{u['name']} ({u['n']:,} rows)"
    extras = _extras(u)
    if not u["ordinal"]:
        return {"status": "not applicable",
                "line": f"{head}: NO VERDICT — the scores are nominal (categories, not points on a scale), so the "
                        f"ordinal criteria (QWK, Pearson r, SMD) do not apply; accuracy {u['accuracy']:.3f}, "
                        f"Cohen's κ {u['kappa']:.3f}, macro-F1 {u['macro_f1']:.3f} | " + " | ".join(extras)}
    checks = u["checks"]
    failed = [c for c in checks if c["status"] in ("not met", "undefined")]
    unsure = [c for c in checks if c["status"] == "uncertain"]
    met = [c for c in checks if c["status"] == "met"]
    skipped = [c for c in checks if "not_checked" in c]
    if u["n"] < u["min_answers"]:
        status = "too few"
        shown = [_show(c) for c in checks if c["criterion"] in ("qwk", "r", "smd")]
        parts = [f"TOO FEW ANSWERS TO JUDGE — fewer than {u['min_answers']} (below that the 95 % interval of QWK "
                 f"is wider than ±0.10); as measured: " + "; ".join(shown)]
        return {"status": status, "line": f"{head}: {' | '.join(parts + extras)} → {_use(status)}"}
    status = "not met" if failed else "uncertain" if unsure else "met"
    parts = []
    if failed:
        parts.append("NOT MET — " + "; ".join(_show(c) for c in failed))
    elif not unsure:
        parts.append("MET — every criterion checked, with its 95 % interval")
    if unsure:
        parts.append(("UNCERTAIN — the 95 % interval straddles the limit: " if not failed else "uncertain: ")
                     + "; ".join(_show(c) for c in unsure))
    if met:
        groups = [c for c in met if c["criterion"] == "group_smd"]
        shown = [_show(c) for c in met if c["criterion"] != "group_smd"]
        if groups:
            shown.append(f"SMD within ±{GROUP_SMD_MAX:.2f} in {len(groups)} group(s)")
        parts.append("met: " + "; ".join(shown))
    if skipped:
        parts.append("not checked: " + "; ".join(f"{'degradation' if c['criterion'] == 'degradation' else 'subgroups'}"
                                                 f" ({c['not_checked']})" for c in skipped))
    return {"status": status, "line": f"{head}: {' | '.join(parts + extras)} → {_use(status)}"}


#: what each verdict means for the scorer's use (any other: not met)
USE = {"met": "may score on its own by these criteria",
       "uncertain": "do not let it score alone yet: these answers cannot tell; judge it on more answers scored "
                    "by hand (keep a human rater meanwhile)",
       "too few": "no verdict: keep a human rater, and judge it again on more answers scored by hand"}


def _use(status):
    return USE.get(status, "do not let it score alone: keep a human rater (or review what it flags)")


#: a verdict's status as the verdict line opens on it
STATUS_WORDS = {"met": "MET", "not met": "NOT MET", "uncertain": "UNCERTAIN", "too few": "TOO FEW ANSWERS TO JUDGE",
                "not applicable": "NO VERDICT (nominal scores)"}


def verdict_summary(u):
    """A unit's verdict in one compact line (``tinykd distill`` prints one per machine and item): its status,
    each criterion as the verdict line shows it with its own status (met / not met / uncertain), those not
    checked and why, and what to do — the words of :func:`_verdict`, without the baseline."""
    checks = [f"{_show(c)}: {c['status']}" for c in u["checks"] if "not_checked" not in c]
    checks += [f"{'degradation' if c['criterion'] == 'degradation' else 'subgroups'} not checked "
               f"({c['not_checked']})" for c in u["checks"] if "not_checked" in c]
    status = u["verdict"]["status"]
    use = "" if status == "not applicable" else f" → {_use(status)}"
    head = f"{u['name']} ({u['n']:,} rows): {STATUS_WORDS[status]}"
    hh = u.get("human_human") or {}
    if "rows" in hh and hh.get("qwk") is not None:
        checks.append(f"human–human QWK {hh['qwk']:.3f} on {hh['rows']} ({hh['n']:,} rows)")
    return head + (" — " + "; ".join(checks) if checks else "") + use


def group_findings(unit):
    """One sentence per judged group whose SMD breaks the subgroup criterion, naming the direction."""
    out = []
    for col, rows in unit.get("groups", {}).items():
        for g in rows:
            if not g["judged"] or "smd" not in g or not _finite(g["smd"]) or abs(g["smd"]) <= GROUP_SMD_MAX:
                continue
            side = "lower" if g["smd"] < 0 else "higher"
            out.append(f"{col} = {g['group']} ({g['n']:,} rows): the machine scores this group {side} than the "
                       f"humans do (SMD {g['smd']:+.3f}{_ci(g.get('smd_interval'))}, limit ±{GROUP_SMD_MAX:.2f}); accuracy "
                       f"{g['accuracy']:.3f}, {g['vs_rest']['accuracy']:+.3f} against the rest")
    return out


def _downsample(xs, k=200):
    if len(xs) <= k:
        return list(range(len(xs)))
    return sorted(set(np.linspace(0, len(xs) - 1, k).round().astype(int).tolist()))


def fitness_report(model, texts, labels, *, contexts=None, items=None, rater2=None, groups=None, splits=None,
                   split=None, nominal=False, target_accuracy=REPORT_TARGET, min_group_rows=MIN_GROUP_ROWS,
                   name="model", label_name="labels", rater2_name="rater2", min_answers=MIN_ANSWERS):
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
    model's validation rows, applied to these rows) and ``misjudged`` (the wrong answers of highest
    confidence, each with its words' weights when the model has ``explain``); ``label_names``: the
    score names the model stores (``{score: name}``; empty without). Units of fewer than ``min_answers``
    rows get no verdict. ``name`` names a single student's unit. Labels far
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

    scale, unseen, ordinal = report_scale(classes, y, nominal)
    names = _names_of(model)

    def unit(idx, name):
        take = lambda xs: None if xs is None else [xs[i] for i in idx]  # noqa: E731
        return assess(take(y), take(pred), labels=scale, ordinal=ordinal, rater2=take(r2),
                      groups={c: take(v) for c, v in grp.items()}, name=name, min_group_rows=min_group_rows,
                      min_answers=min_answers, names=names)

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
            "review": _review(model, p_cal, yi, target_accuracy), "groups": list(grp), "rater2": rater2 is not None,
            "label_names": names, "misjudged": _misjudged(model, texts, contexts, items, rows, y, pred, p_cal)}


def report_scale(classes, y, nominal=False):
    """``(scale, unseen, ordinal)`` of human scores ``y`` against a model's ``classes``: the score points
    compared (the classes and the humans' others, in order when ordinal), the humans' scores the model lacks,
    and whether they are points on a scale (numbers, unless ``nominal``)."""
    known = {label_key(c) for c in classes}
    unseen = [v for v in dict.fromkeys(y) if label_key(v) not in known]
    ordinal = not nominal and all(_is_number(c) for c in classes) and all(_is_number(v) for v in y)
    scale = list(classes) + unseen
    return (sorted(scale) if ordinal else scale), unseen, ordinal


def _names_of(model):
    """``{score key: name}`` from the model's ``label_names`` (a bundle's when its students agree); {} without."""
    names = getattr(model, "label_names", None)
    if names is None and isinstance(model, Bundle):
        kinds = {tuple(getattr(st, "label_names", None) or ()) for st in model.students.values()}
        names = list(kinds.pop()) if len(kinds) == 1 else None
    if not names or len(names) != len(model.classes):
        return {}
    return {label_key(c): str(n) for c, n in zip(model.classes, names)}


def _misjudged(model, texts, contexts, items, rows, y, pred, p_cal, k=MISJUDGED_SHOWN):
    """The ``k`` wrong answers of highest confidence: text, context, item, human and machine score, confidence,
    and — when the model has ``explain`` — ``words``: ``[word, weight]`` in text order (+: pushed toward the
    machine's score)."""
    conf = p_cal.max(axis=1) if len(p_cal) else np.zeros(0)
    wrong = [i for i in range(len(y)) if label_key(y[i]) != label_key(pred[i])]
    top = sorted(wrong, key=lambda i: -float(conf[i]))[:k]
    t = [texts[rows[i]] for i in top]
    c = None if contexts is None else [contexts[rows[i]] for i in top]
    its = None if items is None else [items[i] for i in top]
    words = None
    if top and hasattr(model, "explain"):
        words = model.explain(t, its, c) if isinstance(model, Bundle) else model.explain(t, c)
    out = []
    for j, i in enumerate(top):
        out.append({"text": t[j], "context": None if c is None else c[j], "item": None if its is None else its[j],
                    "human": label_key(y[i]), "machine": label_key(pred[i]), "confidence": float(conf[i]),
                    "words": None if words is None else [[str(w), float(v)] for w, v in words[j]]})
    context_name = (getattr(model, "meta", None) or {}).get("columns", {}) or {}
    return {"explained": words is not None, "n_wrong": len(wrong), "answers": out,
            "context_name": context_name.get("context") if c is not None else None}


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
    review["steps"] = _review_steps(thr, flagged, acc, review["validation"], conf, ok)
    return review


def _review_steps(thr, flagged, acc, chosen, conf, ok):
    """The trade-off table: the least flagging that reaches 0 %, 10 %, … of the rows, on to the share the
    chosen threshold flags here (at least 50 %), and the chosen threshold's own row (``"chosen": True``)."""
    top = 0.5
    if chosen and "threshold" in chosen:
        top = max(top, chosen["here_flagged"])
    steps = []
    for share in np.arange(0, 11) / 10:
        if share > top + 0.1 - 1e-9:
            break
        i = int(np.searchsorted(flagged, share - 1e-12))
        if i < len(thr):
            steps.append({"threshold": float(thr[i]), "flagged": float(flagged[i]), "accuracy": float(acc[i])})
    if chosen and "threshold" in chosen:
        rest = ~(conf < chosen["threshold"])
        steps.append({"threshold": float(chosen["threshold"]), "flagged": chosen["here_flagged"], "chosen": True,
                      "accuracy": float(ok[rest].mean()) if rest.any() else float("nan")})
        steps.sort(key=lambda s: (s["flagged"], s.get("chosen", False)))
    return steps


CALIBRATION_WORSE = ("on these rows the temperature raised the ECE: the raw softmax was the better-calibrated "
                     "confidence here (these answers differ from the validation rows it was fitted on)")


def calibration_worse(cal):
    """Whether the stored temperature made the confidence worse calibrated on the rows reported (by > 0.005)."""
    return _finite(cal["before"]["ece"]) and _finite(cal["after"]["ece"]) and \
        cal["after"]["ece"] > cal["before"]["ece"] + 0.005


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
    out.append(f"calibration ({tdesc}): ECE on these rows {cal['before']['ece']:.3f} → {cal['after']['ece']:.3f}"
               + (f" — {CALIBRATION_WORSE}" if calibration_worse(cal) else ""))
    v = res["review"].get("validation")
    if v and "threshold" in v:
        rest = (f"the rest are {v['here_accuracy']:.1%} right" if v["here_flagged"] < 1
                else "nothing is left to the machine")
        out.append(f"review: --target-accuracy {v['target']:g} → --review-below {v['threshold']:.3f} (flags "
                   f"{v['flagged']:.0%} of the validation rows); on these rows it flags {v['here_flagged']:.0%}, "
                   + rest)
    return out
