"""A second round of ``tinykd distill`` (``warm_start``): what the previous round's model makes reusable.

The round after a person has scored more answers (``tinykd suggest``) starts from the model the previous
round saved:

* **the teacher** fine-tunes on from the previous round's teacher (``tinykd-teacher fit --warm-from``) for
  at most :data:`WARM_EPOCHS` epochs; the previous teacher itself is validated first, as epoch 0, and the
  same early-stopping rule may keep it — then the teacher did not change;
* **each answer keeps its role** (:func:`keep_roles`): an answer the previous teacher trained on never
  validates or tests the new one, and the validation and test answers stay what they were; only newly
  scored answers get a role anew;
* **the teacher's labels** of a copy are reused only from a teacher with the very same weights (the
  SHA-256 of its weights file, :func:`weights_sha`) and for the very same copy (id, text and context; an
  answer's copies are seeded by its id, so most stay the same, but a word swapped in is drawn from all the
  answers): a teacher that changed relabels every copy, since any label it gave may have moved
  (:func:`reuse_labels`);
* **the copies** of an answer scored before, with the same text, are its copies of the previous round
  (:func:`previous_copies`), so that an unchanged teacher's labels of them can be reused; only newly scored
  answers get new copies;
* **the students** retrain, for the preset the previous round kept (its plain NN and KD student): the
  choice between presets was made on the first round's validation rows, and one preset is half the time.
"""
from __future__ import annotations

import csv
import json
import os
import shutil

from tinykd.files.csvfiles import AtomicCsvWriter, file_sha256

#: the most epochs a warm-started teacher trains after its epoch 0 (the previous teacher)
WARM_EPOCHS = 2
#: the weights file of a fitted teacher, in the order they are looked for
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
#: the labels stage's folder prefix and marker (:mod:`tinykd.distill.stages`)
_LABELS, _MARKER = "labels-", "done.json"


def previous_teachers(model_path):
    """``{item: (teacher folder, kept preset)}`` of the model a previous ``tinykd distill`` saved at
    ``model_path`` (item None for one student); a one-line ValueError for a model distill did not make or a
    teacher that is gone."""
    from tinykd.scoring.student import Bundle, load

    model = load(model_path)
    students = model.students if isinstance(model, Bundle) else {None: model}
    out = {}
    for item, st in students.items():
        folder = (st.meta.get("distill") or {}).get("teacher")
        if not folder:
            raise ValueError(f"--warm-start {model_path}: not a model made by tinykd distill (it names no teacher)")
        if not os.path.exists(os.path.join(folder, "teacher.json")):
            raise ValueError(f"--warm-start {model_path}: its teacher {folder} is gone (was its work folder "
                             "removed?); distill without --warm-start")
        out[item] = (folder, st.meta["distill"].get("preset"))
    return out


def weights_sha(teacher_dir):
    """The SHA-256 of a fitted teacher's weights file (None without one): a teacher's identity."""
    for name in WEIGHTS_FILES:
        path = os.path.join(teacher_dir, name)
        if os.path.exists(path):
            return file_sha256(path)
    return None


def rows_file(teacher_dir):
    """The rows file (id, role, …) a teacher fitted by distill was trained from: named by its stage's job
    file, found in the work folder that holds the teacher (so a moved work folder still works)."""
    stage = os.path.dirname(os.path.abspath(teacher_dir))
    try:
        with open(os.path.join(stage, "job.json"), encoding="utf-8") as f:
            data = json.load(f)["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    path = os.path.join(os.path.dirname(stage), os.path.basename(os.path.dirname(data)), "rows.csv")
    return path if os.path.exists(path) else None


def previous_roles(teacher_dirs):
    """``({id: role}, sha)``: each answer's role in the rows the previous teachers were trained from, and
    the hashes of those files (the rows stage's key hashes them); ``({}, None)`` when none is found."""
    roles, shas = {}, []
    for path in sorted({p for p in map(rows_file, teacher_dirs) if p}):
        shas.append(file_sha256(path))
        with open(path, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                roles[r["id"]] = r["role"]
    return roles, ("+".join(shas) or None)


#: the roles an answer keeps from round to round
KEPT_ROLES = ("train", "val", "test")


def keep_roles(ids, labels, roles, previous):
    """``roles`` with every scored answer back in the role it had in the previous round (``previous``:
    ``{id: role}``) — one the previous teacher trained on never validates or tests the new one, and the
    test answers stay the test answers; returns the new list and how many changed. Answers new to this
    round keep the role this round's split gave them."""
    out, changed = list(roles), 0
    for i, (rid, lab, role) in enumerate(zip(ids, labels, roles)):
        before = previous.get(rid)
        if lab is not None and role in KEPT_ROLES and before in KEPT_ROLES and before != role:
            out[i], changed = before, changed + 1
    return out, changed


def previous_copies(teacher_dir, sha):
    """The copies file the previous round's teacher (``teacher_dir``, weights hashing to ``sha``) labelled —
    the previous round's transfer set — or None: found by the labels stage that records that teacher, in the
    work folder holding it (the latest such stage)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(teacher_dir)))
    found = [c for _, c, _ in reusable_labels([root], sha, None)]
    return max(found, key=os.path.getmtime) if found else None


def copies_by_answer(copies_csv, rows_csv):
    """``{answer id: ((text, context), [(copy id, copy text), …])}`` of the previous round's training answers
    (``rows_csv``: the rows the previous teacher was trained from) and their copies in ``copies_csv``."""
    with open(rows_csv, newline="", encoding="utf-8") as f:
        answers = {r["id"]: ((r["text"], r.get("context", "")), []) for r in csv.DictReader(f) if r["role"] == "train"}
    for cid, text, _ in _copies(copies_csv):
        src = cid.rsplit("~aug", 1)[0]
        if src in answers:
            answers[src][1].append((cid, text))
    return answers


def _copies(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["id"], r["text"], r.get("context", "")) for r in csv.DictReader(f)]


def reusable_labels(roots, sha, bf16):
    """``(labels.csv, copies.csv, labels.json)`` of every finished labels stage under the work folders
    ``roots`` whose teacher's weights hash to ``sha`` in the precision ``bf16`` (None: any)."""
    found = []
    for root in dict.fromkeys(os.path.abspath(r) for r in roots if r and os.path.isdir(r)):
        for name in sorted(os.listdir(root)):
            marker = os.path.join(root, name, _MARKER)
            if not name.startswith(_LABELS) or not os.path.exists(marker):
                continue
            try:
                with open(marker, encoding="utf-8") as f:
                    done = json.load(f)
            except (OSError, ValueError):
                continue
            copies = os.path.join(root, str(done.get("copies_dir")), "copies.csv")
            labels = os.path.join(root, name, "labels.csv")
            same = done.get("teacher_weights") == sha and bf16 in (None, done.get("bf16", "off"))
            if same and os.path.exists(copies) \
                    and os.path.exists(labels):
                found.append((labels, copies, os.path.join(root, name, "labels.json")))
    return found


def reuse_labels(copies_csv, sources):
    """``(reused, missing, order)``: ``{copy id: its labels row as a dict}`` for the copies of ``copies_csv``
    that one of ``sources`` (:func:`reusable_labels`) labelled with the same text and context, the copies
    (id, text, context) still to label, and every copy's id in the file's order."""
    want = _copies(copies_csv)
    reused = {}
    for labels, copies, _ in sources:
        known = {c[0]: c for c in _copies(copies)}
        same = {c[0] for c in want if c[0] not in reused and known.get(c[0]) == c}
        if not same:
            continue
        with open(labels, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                if r["id"] in same:
                    reused[r["id"]] = r
    return reused, [c for c in want if c[0] not in reused], [c[0] for c in want]


def write_missing(path, missing):
    """The copies still to label, as a copies file (id, text, context)."""
    with AtomicCsvWriter(path, ["id", "text", "context"]) as w:
        for c in missing:
            w.writerow(list(c))


def merge_labels(folder, order, reused, sidecar):
    """``folder/labels.csv``: the labels the teacher just wrote there for the missing copies (if any) and
    the ``reused`` rows, in the copies' ``order`` (their ids); without a new file, ``sidecar`` (a reused
    stage's ``labels.json``) is copied beside it."""
    path = os.path.join(folder, "labels.csv")
    new, header = {}, None
    if os.path.exists(path):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            new = {r["id"]: r for r in reader}
    else:
        shutil.copyfile(sidecar, os.path.join(folder, "labels.json"))
    header = header or list(next(iter(reused.values())))
    with AtomicCsvWriter(path, header) as w:
        for rid in order:
            r = new.get(rid) or reused[rid]
            w.writerow([r.get(h, "") for h in header])
