"""``tinykd report``'s page: :func:`tinykd.quality.evaluate.fitness_report`'s dict as one self-contained
HTML file — styles inline, plots inline as ``data:`` URIs (PNG), no scripts, nothing fetched —
so it opens offline from a file or a mail attachment.

The plots come from :mod:`tinykd.quality.plots` (matplotlib, the optional extra ``[report]``); without
matplotlib the page holds the same tables and a note saying how to get the plots.
"""
from __future__ import annotations

import base64
import datetime
import html

from tinykd._version import __version__
from tinykd.quality.evaluate import CALIBRATION_WORSE, CRITERIA, calibration_worse, group_findings, score_name
from tinykd.quality.plots import MIN_BIN_ROWS

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;
 padding:0 1em;color:#1d1d1f;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.8em;border-bottom:2px solid #ddd;padding-bottom:.2em}
h3{margin-top:1.4em} .sub{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6em 0 1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right} th{background:#f2f2f2}
td.l,th.l{text-align:left}
.met{background:#d9f2d9;color:#145214;font-weight:600} .notmet{background:#f8d7d7;color:#7a1010;font-weight:600}
.na{background:#eee;color:#555}
.unsure{background:#fff0c2;color:#6b4a00;font-weight:600} .ci{font-size:.82em;font-weight:400;color:#444}
td.chosen{font-weight:700;background:#e8f0fb}
.verdict{background:#f7f7f7;border-left:4px solid #999;padding:.5em .8em}
.w{border-radius:3px;padding:0 .1em} .ans{max-width:46em;text-align:left}
.note{background:#fff6d9;border:1px solid #e6c96a;padding:.5em .8em}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start} img{max-width:100%;border:1px solid #eee}
.small{font-size:.85em;color:#555}
"""


def _e(x):
    return html.escape(str(x), quote=True)


def _num(v, fmt=".3f", signed=False):
    if v is None or v != v:
        return "—"
    return format(v, ("+" if signed else "") + fmt)


_STATUS = {"met": ("met", "met"), "not met": ("notmet", "not met"), "uncertain": ("unsure", "uncertain"),
           "undefined": ("notmet", "undefined"), "not checked": ("na", "not checked")}


def _badge(met, status=None):
    """A criterion's cell: met / not met / uncertain (its 95 % interval straddles the limit) / not checked."""
    if status is None:
        status = "not checked" if met is None else "met" if met else "not met"
    cls, text = _STATUS.get(status, ("na", status))
    return f'<td class="{cls}">{_e(text)}</td>'


def _status_cell(status, n=None, least=None):
    cls = {"met": "met", "not met": "notmet", "uncertain": "unsure"}.get(status, "na")
    text = {"met": "MET", "not met": "NOT MET", "uncertain": "UNCERTAIN",
            "too few": f"too few answers to judge (< {least:,})" if least else "too few answers to judge"}.get(
        status, "no verdict")
    return f'<td class="{cls}">{_e(text)}</td>'


def _img(png, alt):
    from tinykd.quality.plots import shown_width

    return (f'<img alt="{_e(alt)}" width="{shown_width(png)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')


def _table(head, rows, left=1):
    """head: column titles; rows: lists of cell HTML (a cell starting with '<td' is used as is)."""
    out = ["<table><tr>" + "".join(f'<th class="{"l" if k < left else ""}">{_e(h)}</th>'
                                   for k, h in enumerate(head)) + "</tr>"]
    for r in rows:
        cells = []
        for k, c in enumerate(r):
            c = str(c)
            cells.append(c if c.startswith("<td") else f'<td class="{"l" if k < left else ""}">{c}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def _check_of(unit, crit):
    return next((c for c in unit["checks"] if c["criterion"] == crit), None)


def _ci(iv):
    if iv is None or not all(v == v and v is not None for v in iv):
        return ""
    return f"<br><span class='ci'>[{iv[0]:.3f}, {iv[1]:.3f}]</span>"


def _crit_cell(c, judged=True):
    """A criterion's value and 95 % interval, coloured by its status (grey in a unit too small to judge)."""
    cls = _STATUS.get(c["status"], ("na",))[0] if judged else "na"
    return (f'<td class="{cls}">{_num(c["value"], signed=c["criterion"] != "qwk" and c["criterion"] != "r")}'
            f'{_ci(c.get("interval"))}</td>')


def _degradation_cell(u, judged):
    deg = [c for c in u["checks"] if c["criterion"] in ("degradation_qwk", "degradation_r")]
    if not deg:
        why = next((c["not_checked"] for c in u["checks"] if c["criterion"] == "degradation"), "")
        return f'<td class="na">{_e(why)}</td>'
    worst = "not met" if any(c["status"] in ("not met", "undefined") for c in deg) else \
        "uncertain" if any(c["status"] == "uncertain" for c in deg) else "met"
    cls = _STATUS[worst][0] if judged else "na"
    return (f'<td class="{cls}">' + "<br>".join(f'{"QWK" if c["criterion"] == "degradation_qwk" else "r"} '
                                               f'{_num(c["value"], signed=True)}{_ci(c.get("interval"))}'
                                               for c in deg) + "</td>")


def _groups_cell(u, judged):
    grp = [c for c in u["checks"] if c["criterion"] == "group_smd" and "not_checked" not in c]
    if not grp:
        return '<td class="na">no groups</td>'
    met = sum(c["status"] == "met" for c in grp)
    bad = sum(c["status"] in ("not met", "undefined") for c in grp)
    worst = "not met" if bad else "uncertain" if met < len(grp) else "met"
    return f'<td class="{_STATUS[worst][0] if judged else "na"}">{met} of {len(grp)} met</td>'


def _baseline_cell(u):
    b, names = u["baseline"], u.get("names")
    text = f"always {_e(score_name(b['score'], names))}: exact {_num(b['exact'])}"
    if "smd" in b:
        text += f", SMD {_num(b['smd'], signed=True)}, QWK 0"
    return f'<td class="l">{text}</td>'


def _verdict_table(res):
    """One row per unit: each criterion's value and 95 % interval coloured by its status, the majority-score
    baseline beside the student, the verdict and what the student does to (nearly) every answer."""
    rows = []
    for u in res["units"]:
        one = u.get("one_score")
        note = (f"one score, {_e(score_name(one['score'], u.get('names')))}, for {one['share']:.0%} of the answers"
                if one else "")
        if not u["ordinal"]:
            rows.append([_e(u["name"]), f"{u['n']:,}", *["—"] * 5, '<td class="na">—</td>', '<td class="na">—</td>',
                         _baseline_cell(u), _status_cell("not applicable"), note])
            continue
        judged = u["verdict"]["status"] != "too few"
        iv = u["intervals"]
        cells = [_crit_cell(_check_of(u, crit), judged) for crit in ("qwk", "r", "smd")]
        cells += [f"{_num(u[k])}{_ci(iv.get(k))}" for k in ("exact", "adjacent")]
        cells += [_degradation_cell(u, judged), _groups_cell(u, judged), _baseline_cell(u)]
        rows.append([_e(u["name"]), f"{u['n']:,}", *cells,
                     _status_cell(u["verdict"]["status"], least=u.get("min_answers")), note])
    c = CRITERIA
    head = ["", "N", f"QWK ≥ {c['qwk_min']:.2f}", f"r ≥ {c['r_min']:.2f}", f"|SMD| ≤ {c['smd_max']:.2f}",
            "exact agreement", "adjacent agreement", f"degradation ≥ −{c['degradation_max']:.2f}",
            f"subgroup |SMD| ≤ {c['group_smd_max']:.2f}", "majority-score baseline", "verdict", "note"]
    return _table(head, rows)


def _measures(u):
    iv = u.get("intervals") or {}
    rows = [["N", f"{u['n']:,}", "", "", ""]]
    if u["ordinal"]:
        b = u["baseline"]
        rows += [["human score: mean (SD)", f"{_num(u['human_mean'])} ({_num(u['human_sd'])})", "", "", ""],
                 ["machine score: mean (SD)", f"{_num(u['machine_mean'])} ({_num(u['machine_sd'])})", "", "", ""]]
        for key, name in (("smd", "SMD (machine − human) / SD(human)"), ("exact", "exact agreement"),
                          ("adjacent", "adjacent agreement (≤ 1 point apart)"), ("qwk", "QWK"),
                          ("r", "Pearson r")):
            c = _check_of(u, key)
            rows.append([name, _num(u[key], signed=key == "smd") + _ci(iv.get(key)),
                         _num(b.get(key), signed=key == "smd"), _e(c["text"]) if c else "",
                         _badge(c["met"], c["status"]) if c else ""])
    else:
        rows.append(["exact agreement", _num(u["exact"]), _num(u["baseline"]["exact"]), "", ""])
        rows.append(["Cohen's κ (unweighted)", _num(u["kappa"]), "0.000", "", ""])
    rows += [["accuracy", _num(u["accuracy"]), _num(u["baseline"]["exact"]), "", ""],
             ["macro-F1", _num(u["macro_f1"]), "", "", ""]]
    base = f"always {score_name(u['baseline']['score'], u.get('names'))}"
    return _table(["measure", "student [95 % interval]", f"baseline: {base}", "criterion", ""], rows)


def _human_human(u):
    hh = u.get("human_human")
    if not hh:
        return "<p class='small'>No second rater (<code>--rater2-col</code>): the human–human agreement and " \
               "the degradation are not computed.</p>"
    if "qwk" in hh:
        deg = {c["criterion"]: c for c in u["checks"] if c["criterion"].startswith("degradation")}
        rows = [["QWK", _num(hh["qwk"]), _num(hh["machine_qwk"]), _num(hh["degradation_qwk"], signed=True)
                 + _ci(hh.get("intervals", {}).get("degradation_qwk")),
                 _badge(None, deg["degradation_qwk"]["status"])],
                ["Pearson r", _num(hh["r"]), _num(hh["machine_r"]), _num(hh["degradation_r"], signed=True)
                 + _ci(hh.get("intervals", {}).get("degradation_r")),
                 _badge(None, deg["degradation_r"]["status"])],
                ["exact agreement", _num(hh["exact"]), _num(hh["machine_exact"]), "", ""]]
        head = ["", "human–human", "machine–human", "degradation", ""]
    else:
        rows = [["exact agreement", _num(hh["exact"]), _num(hh["machine_exact"])],
                ["Cohen's κ", _num(hh["kappa"]), _num(hh["machine_kappa"])]]
        head = ["", "human–human", "machine–human"]
    if "rows" in hh:  # measured on other rows of the item (assess's human_human)
        return (f"<p>Human–human on {_e(hh['rows'])} ({hh['n']:,} rows both humans scored); the machine's on "
                f"this unit's {u['n']:,} rows:</p>" + _table(head, rows))
    return f"<p>On the {hh['n']:,} rows both humans scored:</p>" + _table(head, rows)


def _groups(u):
    if not u["groups"]:
        return ""
    out = []
    for col, rows in u["groups"].items():
        body = []
        for g in rows:
            if u["ordinal"]:
                c = next((c for c in u["checks"] if c.get("group") == [col, g["group"]]), None)
                body.append([_e(g["group"]), f"{g['n']:,}", _num(g["smd"], signed=True) + _ci(g.get("smd_interval")),
                             _num(g["qwk"]),
                             _num(g["accuracy"]), _num(g["vs_rest"]["smd"], signed=True),
                             _num(g["vs_rest"]["qwk"], signed=True), _num(g["vs_rest"]["accuracy"], signed=True),
                             _badge(None, c["status"]) if g["judged"] and c else '<td class="na">too few rows</td>'])
            else:
                body.append([_e(g["group"]), f"{g['n']:,}", _num(g["accuracy"]),
                             _num(g["vs_rest"]["accuracy"], signed=True)])
        head = (["group", "N", "SMD", "QWK", "accuracy", "Δ SMD", "Δ QWK", "Δ accuracy",
                 f"|SMD| ≤ {CRITERIA['group_smd_max']:.2f}"] if u["ordinal"] else ["group", "N", "accuracy",
                                                                                     "Δ accuracy"])
        out.append(f"<h4>by {_e(col)}</h4>" + _table(head, body))
    finds = group_findings(u)
    if finds:
        out.append("<ul>" + "".join(f"<li>{_e(s)}</li>" for s in finds) + "</ul>")
    return ("<p class='small'>SMD within a group: (machine mean − human mean) of the group over the SD of all the "
            "human scores, so groups share one scale; Δ: the group minus the rest of the rows. Groups under "
            f"{CRITERIA['min_group_rows']} rows are not judged.</p>" + "".join(out))


def _confusion_table(u):
    labels = [score_name(k, u.get("names")) for k in u["labels"]]
    rows = [[_e(lab)] + [f"{v:,}" for v in row] for lab, row in zip(labels, u["confusion_matrix"])]
    return _table(["human ↓ / machine →"] + labels, rows)


def _calibration(res, figs):
    cal = res["calibration"]
    out = []
    temps = {k: v for k, v in cal["temperature"].items()}
    lines = []
    for k, st in cal["stored"].items():
        name = "" if len(cal["stored"]) == 1 else f"{_e(k)}: "
        if st is None:
            lines.append(f"{name}none — the model file was written before tinykd calibrated confidence "
                         "(raw softmax)")
        elif not st.get("temperature"):
            lines.append(f"{name}none — {_e(st.get('reason') or 'no validation rows')}")
        else:
            from tinykd.scoring.calibration import stored_fit

            n, before, after = stored_fit(st)
            lines.append(f"{name}temperature {st['temperature']:.3f}, fitted on {n} validation rows "
                         f"(validation ECE {before} → {after})")
    out.append("<p>Calibration stored in the model: " + "; ".join(lines) + ".</p>")
    out.append(f"<p>Expected calibration error on these {res['n']:,} rows ({len(cal['before']['bins'])} equal-width "
               f"bins of the top probability): <b>{cal['before']['ece']:.3f}</b> with the raw softmax, "
               f"<b>{cal['after']['ece']:.3f}</b> calibrated"
               + (" (the model is not calibrated, so both are the same)" if not any(temps.values()) else "")
               + ".</p>")
    if calibration_worse(cal):
        out.append(f"<p class='note'>Calibration made it worse here: {_e(CALIBRATION_WORSE)}. Read the confidence "
                   "on such answers with care, and check the review threshold on answers like them.</p>")
    few = lambda b: "" if not b["n"] or b["n"] >= MIN_BIN_ROWS else "*"  # noqa: E731
    rows = []
    for b0, b1 in zip(cal["before"]["bins"], cal["after"]["bins"]):
        rows.append([f"{b0['lo']:.1f}–{b0['hi']:.1f}", f"{b0['n']:,}{few(b0)}", _num(b0["confidence"]),
                     _num(b0["accuracy"]), f"{b1['n']:,}{few(b1)}", _num(b1["confidence"]), _num(b1["accuracy"])])
    table = _table(["confidence bin", "raw: rows", "mean confidence", "accuracy", "calibrated: rows",
                    "mean confidence", "accuracy"], rows)
    table += (f"<p class='small'>* fewer than {MIN_BIN_ROWS} rows: too few to read its accuracy; not drawn in "
              "the diagram.</p>")
    out.append(f"<div class='figs'><div>{table}</div>{figs.get('reliability', '')}</div>")
    return "\n".join(out)


def _review(res, figs):
    rev = res["review"]
    out = [f"<p>Flag an answer for a human when its (calibrated) confidence is below a threshold; the rest are "
           f"scored by the machine. On these rows the machine alone is {rev['accuracy_all']:.1%} right.</p>"]
    v = rev.get("validation")
    if v and "threshold" in v:
        out.append(f"<p><code>tinykd score … --target-accuracy {v['target']:g}</code> picks "
                   f"<b>--review-below {v['threshold']:.3f}</b> on the model's {v['n']:,} validation rows, where it "
                   f"flags {v['flagged']:.1%} and the rest are {v['accuracy']:.1%} right. On these rows the same "
                   f"threshold flags <b>{v['here_flagged']:.1%}</b>"
                   + (f" and the rest are <b>{v['here_accuracy']:.1%}</b> right.</p>" if v["here_flagged"] < 1
                      else ": nothing is left to the machine.</p>"))
    elif v:
        out.append(f"<p>No threshold reaches {rev['target']:g} on the model's validation rows: {_e(v['error'])}</p>")
    else:
        out.append("<p>The model file holds no validation predictions, so no threshold can be chosen on "
                   "validation rows (<code>--target-accuracy</code> needs a model trained by this tinykd with "
                   "validation rows).</p>")
    rows = []
    for s in rev["steps"]:
        cells = [f"{s['flagged']:.1%}", f"{s['threshold']:.3f}", _num(s["accuracy"], ".1%")]
        rows.append([f"<td class='chosen'>{c}</td>" for c in cells] + ["<td class='chosen l'>the chosen threshold</td>"]
                    if s.get("chosen") else cells + [""])
    table = _table(["flagged", "--review-below", "accuracy on the rest", ""], rows, left=0)
    out.append(f"<div class='figs'><div>{table}</div>{figs.get('review', '')}</div>")
    return "\n".join(out)


def _highlighted(words):
    """The answer's words, each on a background green (it pushed toward the machine's score) or red (against
    it), as strong as its weight against the answer's largest."""
    top = max((abs(w) for _, w in words), default=0) or 1
    out = []
    for word, w in words:
        a = 0.12 + 0.68 * abs(w) / top
        rgb = "40,160,60" if w > 0 else "215,48,39"
        title = f"{w:+.3g}"
        out.append(f"<span class='w' style='background:rgba({rgb},{a:.2f})' title='{title}'>{_e(word)}</span>"
                   if w else f"<span class='w' title='{title}'>{_e(word)}</span>")
    return " ".join(out)


def _misjudged(res):
    """The misjudged answers of highest confidence, their words highlighted by the student's ``explain``."""
    mis = res.get("misjudged") or {}
    answers = mis.get("answers") or []
    names = res.get("label_names") or {}
    if not answers:
        return "<p>No answer of these rows is misjudged.</p>"
    out = [f"<p>The {len(answers)} answers of the {mis['n_wrong']:,} the machine scored differently from the humans "
           "on which it was most confident: the ones a teacher would least expect to be wrong."
           + (" Each word is shaded by how much it moved the machine's score (the student's own explanation: "
              "<span class='w' style='background:rgba(40,160,60,.6)'>green</span> pushed toward the machine's "
              "score, <span class='w' style='background:rgba(215,48,39,.6)'>red</span> against it; hover for the "
              "weight)." if mis.get("explained") else
              " (This model cannot explain its scores: a model with <code>explain</code> shades the words that "
              "moved each score.)") + "</p>"]
    rows = []
    for a in answers:
        text = _highlighted(a["words"]) if a.get("words") is not None else _e(_short(a["text"], 600))
        where = []
        if a.get("item") is not None:
            where.append(f"item {_e(a['item'])}")
        if a.get("context"):
            where.append(f"{_e(mis.get('context_name') or 'context')}: {_e(_short(a['context'], 200))}")
        ctx = f"<div class='small'>{' — '.join(where)}</div>" if where else ""
        rows.append([f"{ctx}<div class='ans'>{text or '<i>(blank answer)</i>'}</div>",
                     _e(score_name(a["human"], names)), _e(score_name(a["machine"], names)),
                     f"{a['confidence']:.2f}"])
    out.append(_table(["answer", "human", "machine", "confidence"], rows))
    return "\n".join(out)


def _short(s, n):
    s = "" if s is None else str(s)
    return s if len(s) <= n else s[:n - 1] + "…"


def _figures(res):
    """``({name: <img>}, drawn, what the plots' drawing said)``; empty (and False) without matplotlib."""
    from tinykd.quality import plots

    if not plots.available():
        return {}, False, []
    with plots.drawing() as said:
        figs = {"reliability": _img(plots.reliability(res["calibration"]), "reliability diagram"),
                "review": _img(plots.review(res["review"]), "review curve")}
        for k, u in enumerate(res["units"]):
            figs[f"confusion{k}"] = _img(plots.confusion(u), f"{u['name']}: confusion heat-map")
            figs[f"dist{k}"] = _img(plots.distributions(u), f"{u['name']}: score distributions")
    return figs, True, said


def render_html(res, *, model="", data="", split=None, plots=True):
    """The page of :func:`tinykd.quality.evaluate.fitness_report`'s dict ``res`` as an HTML string.
    ``plots=False`` (or no matplotlib) gives tables only, with a note on how to get the plots."""
    from tinykd.quality import plots as plots_mod

    figs, drawn, said = _figures(res) if plots else ({}, False, [])
    where = f"split {split!r}" if split is not None else "every row"
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
             f"<title>tinykd report: {_e(model)}</title><style>{_CSS}</style></head><body>",
             "<h1>May this scorer be used?</h1>",
             f"<p class='sub'>Model <code>{_e(model)}</code> on <code>{_e(data)}</code> ({_e(where)}, "
             f"{res['n']:,} labelled rows"
             + (f"; {res['unlabeled_rows_skipped']:,} unlabeled rows skipped" if res["unlabeled_rows_skipped"] else "")
             + f"). tinykd {_e(__version__)}, {when}.</p>"]
    if not drawn:
        parts.append(f"<p class='note'>Tables only: the plots need matplotlib — <code>{_e(plots_mod.INSTALL)}</code>, "
                     "then run <code>tinykd report</code> again.</p>" if plots else
                     "<p class='note'>Tables only (plots switched off).</p>")
    parts += [f"<p class='note'>{_e(s)}</p>" for s in said]
    parts.append("<h2>Verdict</h2>")
    parts.append(_verdict_table(res))
    last = res["units"][-1]
    parts.append(f"<p class='verdict'>{_e(last['verdict']['line'])}</p>")
    if any(u["verdict"]["status"] == "too few" for u in res["units"]):
        parts.append(f"<p class='small'>Units of fewer than {last['min_answers']:,} answers get no verdict: with "
                     "fewer the 95 % interval of QWK is wider than ±0.10 on 3- and 4-point scales near the 0.70 "
                     "criterion (<code>benchmarks/results/report_min_answers.md</code>).</p>")
    if not res["ordinal"]:
        parts.append("<p class='note'>The scores are nominal (categories, not points on a scale): the ordinal "
                     "measures (SMD, adjacent agreement, QWK, Pearson r) and the criteria built on them do not "
                     "apply. Accuracy, Cohen's κ, macro-F1 and the confusion matrix are shown.</p>")
    if res.get("unseen_labels"):
        parts.append(f"<p class='note'>Human scores the model never saw in training: "
                     f"{_e(', '.join(res['unseen_labels']))}; those rows are always wrong.</p>")
    c = CRITERIA
    parts.append(f"<p class='small'>Criteria of {_e(c['source'])} (the thresholds ETS's RSMTool reports use): "
                 f"QWK ≥ {c['qwk_min']:.2f} and Pearson r ≥ {c['r_min']:.2f} between machine and human; at most "
                 f"{c['degradation_max']:.2f} below the human–human QWK and r (degradation, with a second rater); "
                 f"|SMD| ≤ {c['smd_max']:.2f} over all rows and ≤ {c['group_smd_max']:.2f} within each subgroup. "
                 "SMD = (mean machine − mean human) / SD of the human scores (sample SD): negative means the machine "
                 "scores lower. Adjacent agreement: at most one score point apart. QWK and adjacency use the "
                 "positions of the scores on the scale. Under each value, its 95 % bootstrap interval (1,000 "
                 "resamples of the answers, seed 0): a criterion is <span class='met'>met</span> only when the "
                 "whole interval clears it, <span class='notmet'>not met</span> when the whole interval is on the "
                 "wrong side, <span class='unsure'>uncertain</span> when it straddles the limit; units of fewer than "
                 f"{c['min_answers']} answers are not judged. The majority-score baseline always gives the most "
                 "frequent human score of the unit's rows: the best a one-score scorer could do on them.</p>")
    for k, u in enumerate(res["units"]):
        parts.append(f"<h2>{_e(u['name'])}</h2>")
        parts.append(f"<div class='figs'><div>{_measures(u)}</div>{figs.get(f'dist{k}', '')}</div>")
        parts.append("<h3>Human–human agreement</h3>" + _human_human(u))
        if u["groups"]:
            parts.append("<h3>Subgroups</h3>" + _groups(u))
        parts.append("<h3>Confusion matrix</h3>")
        parts.append(f"<div class='figs'><div>{_confusion_table(u)}</div>{figs.get(f'confusion{k}', '')}</div>")
    parts.append("<h2>Misjudged with the most confidence</h2>" + _misjudged(res))
    parts.append("<h2>Calibrated confidence</h2>" + _calibration(res, figs))
    parts.append("<h2>The human-in-the-loop trade-off</h2>" + _review(res, figs))
    parts.append("<p class='small'>Made by <code>tinykd report</code>; every number is also in "
                 "<code>tinykd report … --json</code>.</p></body></html>")
    return "\n".join(parts)
