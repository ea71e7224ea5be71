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
from tinykd.quality.evaluate import CRITERIA, group_findings

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
.verdict{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.88em;background:#f7f7f7;
 border-left:4px solid #999;padding:.5em .8em;white-space:pre-wrap}
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


def _badge(met):
    if met is None:
        return '<td class="na">not checked</td>'
    return '<td class="met">met</td>' if met else '<td class="notmet">not met</td>'


def _status_cell(status):
    cls = {"met": "met", "not met": "notmet"}.get(status, "na")
    text = {"met": "MET", "not met": "NOT MET"}.get(status, "no verdict")
    return f'<td class="{cls}">{text}</td>'


def _img(png, alt):
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


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


def _verdict_table(res):
    rows = []
    for u in res["units"]:
        if not u["ordinal"]:
            rows.append([_e(u["name"]), f"{u['n']:,}", "—", "—", "—", "—", "—", _status_cell("not applicable")])
            continue
        cells = []
        for crit in ("qwk", "r", "smd"):
            c = _check_of(u, crit)
            cells.append(f'<td class="{"met" if c["met"] else "notmet" if c["met"] is False else "na"}">'
                         f'{_num(c["value"], signed=crit == "smd")}</td>')
        deg = [c for c in u["checks"] if c["criterion"] in ("degradation_qwk", "degradation_r")]
        if deg:
            ok = all(c["met"] is True for c in deg)
            cells.append(f'<td class="{"met" if ok else "notmet"}">QWK '
                         + ", r ".join(_num(c["value"], signed=True) for c in deg) + "</td>")
        else:
            why = next((c["not_checked"] for c in u["checks"] if c["criterion"] == "degradation"), "")
            cells.append(f'<td class="na">{_e(why)}</td>')
        grp = [c for c in u["checks"] if c["criterion"] == "group_smd" and "not_checked" not in c]
        if grp:
            bad = [c for c in grp if c["met"] is not True]
            cells.append(f'<td class="{"notmet" if bad else "met"}">{len(grp) - len(bad)} of {len(grp)} met</td>')
        else:
            cells.append('<td class="na">no groups</td>')
        rows.append([_e(u["name"]), f"{u['n']:,}", *cells, _status_cell(u["verdict"]["status"])])
    c = CRITERIA
    head = ["", "N", f"QWK ≥ {c['qwk_min']:.2f}", f"r ≥ {c['r_min']:.2f}", f"|SMD| ≤ {c['smd_max']:.2f}",
            f"degradation ≥ −{c['degradation_max']:.2f}", f"subgroup |SMD| ≤ {c['group_smd_max']:.2f}", "verdict"]
    return _table(head, rows)


def _measures(u):
    rows = [["N", f"{u['n']:,}", ""]]
    if u["ordinal"]:
        rows += [["human score: mean (SD)", f"{_num(u['human_mean'])} ({_num(u['human_sd'])})", ""],
                 ["machine score: mean (SD)", f"{_num(u['machine_mean'])} ({_num(u['machine_sd'])})", ""]]
        for key, name in (("smd", "SMD (machine − human) / SD(human)"), ("exact", "exact agreement"),
                          ("adjacent", "adjacent agreement (within one score point)"), ("qwk", "QWK"),
                          ("r", "Pearson r")):
            c = _check_of(u, key)
            rows.append([name, _num(u[key], signed=key == "smd"), _e(c["text"]) if c else "", *([_badge(c["met"])]
                                                                                               if c else [""])])
    else:
        rows.append(["exact agreement", _num(u["exact"]), ""])
        rows.append(["Cohen's κ (unweighted)", _num(u["kappa"]), ""])
    rows += [["accuracy", _num(u["accuracy"]), ""], ["macro-F1", _num(u["macro_f1"]), ""]]
    rows = [r + [""] * (4 - len(r)) for r in rows]
    return _table(["measure", "value", "criterion", ""], rows)


def _human_human(u):
    hh = u.get("human_human")
    if not hh:
        return "<p class='small'>No second rater (<code>--rater2-col</code>): the human–human agreement and " \
               "the degradation are not computed.</p>"
    if "qwk" in hh:
        deg = {c["criterion"]: c for c in u["checks"] if c["criterion"].startswith("degradation")}
        rows = [["QWK", _num(hh["qwk"]), _num(hh["machine_qwk"]), _num(hh["degradation_qwk"], signed=True),
                 _badge(deg["degradation_qwk"]["met"])],
                ["Pearson r", _num(hh["r"]), _num(hh["machine_r"]), _num(hh["degradation_r"], signed=True),
                 _badge(deg["degradation_r"]["met"])],
                ["exact agreement", _num(hh["exact"]), _num(hh["machine_exact"]), "", ""]]
        head = ["", "human–human", "machine–human", "degradation", ""]
    else:
        rows = [["exact agreement", _num(hh["exact"]), _num(hh["machine_exact"])],
                ["Cohen's κ", _num(hh["kappa"]), _num(hh["machine_kappa"])]]
        head = ["", "human–human", "machine–human"]
    return f"<p>On the {hh['n']:,} rows both humans scored:</p>" + _table(head, rows)


def _groups(u):
    if not u["groups"]:
        return ""
    out = []
    for col, rows in u["groups"].items():
        body = []
        for g in rows:
            if u["ordinal"]:
                ok = abs(g["smd"]) <= CRITERIA["group_smd_max"] if g["smd"] == g["smd"] else None
                body.append([_e(g["group"]), f"{g['n']:,}", _num(g["smd"], signed=True), _num(g["qwk"]),
                             _num(g["accuracy"]), _num(g["vs_rest"]["smd"], signed=True),
                             _num(g["vs_rest"]["qwk"], signed=True), _num(g["vs_rest"]["accuracy"], signed=True),
                             _badge(ok) if g["judged"] else '<td class="na">too few rows</td>'])
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
    labels = u["labels"]
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
    rows = []
    for b0, b1 in zip(cal["before"]["bins"], cal["after"]["bins"]):
        rows.append([f"{b0['lo']:.1f}–{b0['hi']:.1f}", f"{b0['n']:,}", _num(b0["confidence"]), _num(b0["accuracy"]),
                     f"{b1['n']:,}", _num(b1["confidence"]), _num(b1["accuracy"])])
    table = _table(["confidence bin", "raw: rows", "mean confidence", "accuracy", "calibrated: rows",
                    "mean confidence", "accuracy"], rows)
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
    rows = [[f"{s['flagged']:.1%}", f"{s['threshold']:.3f}", f"{s['accuracy']:.1%}"] for s in rev["steps"]]
    table = _table(["flagged", "--review-below", "accuracy on the rest"], rows, left=0)
    out.append(f"<div class='figs'><div>{table}</div>{figs.get('review', '')}</div>")
    return "\n".join(out)


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
    parts.append("<div class='verdict'>" + "\n".join(_e(u["verdict"]["line"]) for u in res["units"]) + "</div>")
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
                 "positions of the scores on the scale.</p>")
    for k, u in enumerate(res["units"]):
        parts.append(f"<h2>{_e(u['name'])}</h2>")
        parts.append(f"<div class='figs'><div>{_measures(u)}</div>{figs.get(f'dist{k}', '')}</div>")
        parts.append("<h3>Human–human agreement</h3>" + _human_human(u))
        if u["groups"]:
            parts.append("<h3>Subgroups</h3>" + _groups(u))
        parts.append("<h3>Confusion matrix</h3>")
        parts.append(f"<div class='figs'><div>{_confusion_table(u)}</div>{figs.get(f'confusion{k}', '')}</div>")
    parts.append("<h2>Calibrated confidence</h2>" + _calibration(res, figs))
    parts.append("<h2>The human-in-the-loop trade-off</h2>" + _review(res, figs))
    parts.append("<p class='small'>Made by <code>tinykd report</code>; every number is also in "
                 "<code>tinykd report … --json</code>.</p></body></html>")
    return "\n".join(parts)
