"""Fine-tuning loop: AdamW (fused) + linear warm-up, dynamic padding, early stopping on validation accuracy or loss."""
from __future__ import annotations

import copy
import functools
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from tinykd.nn.dense import softmax

from .data import AUTO_LEAST, AUTO_MOST, AUTO_QUANTILE, AUTO_STEP, TRUNCATE
from .precision import autocast


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(device=None):
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def auto_length(tokenizer, texts, contexts=None):
    """The ``max_length`` "auto" gives for these (training) rows: the :data:`AUTO_QUANTILE` of their word
    pieces, untruncated, rounded up to a multiple of :data:`AUTO_STEP`, within [:data:`AUTO_LEAST`,
    min(:data:`AUTO_MOST`, the tokenizer's limit)]."""
    pieces = tokenizer(list(texts)) if contexts is None else tokenizer(list(texts), list(contexts))
    lens = np.array([len(s) for s in pieces["input_ids"]] or [0])
    want = int(np.ceil(np.quantile(lens, AUTO_QUANTILE) / AUTO_STEP) * AUTO_STEP)
    most = min(AUTO_MOST, int(getattr(tokenizer, "model_max_length", AUTO_MOST) or AUTO_MOST))
    return max(AUTO_LEAST, min(want, most))


def encode(tokenizer, texts, contexts=None, max_length=128, truncate="longest"):
    """Token id lists (no padding): the answer, then the context as the second segment. Over ``max_length``
    (:data:`TRUNCATE`): "longest" cuts the longer of the two first; "context" cuts the context first — the
    answer stays whole wherever it fits beside one word piece of context (``truncation="only_second"``), and
    a longer answer is cut with its context (``"longest_first"``)."""
    if truncate not in TRUNCATE:
        raise ValueError(f"truncate must be one of {', '.join(TRUNCATE)}, not {truncate!r}")
    texts = list(texts)
    if contexts is None or truncate == "longest":
        enc = (tokenizer(texts, truncation=True, max_length=max_length) if contexts is None else
               tokenizer(texts, list(contexts), truncation="longest_first", max_length=max_length))
        return {k: enc[k] for k in ("input_ids", "token_type_ids") if k in enc}
    contexts = list(contexts)
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - 1
    fits = [len(a) <= room for a in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
    out = {"input_ids": [None] * len(texts)}
    for keep, how in ((True, "only_second"), (False, "longest_first")):
        idx = [i for i, f in enumerate(fits) if f is keep]
        if not idx:
            continue
        enc = tokenizer([texts[i] for i in idx], [contexts[i] for i in idx], truncation=how, max_length=max_length)
        for k in ("input_ids", "token_type_ids"):
            if k in enc:
                col = out.setdefault(k, [None] * len(texts))
                for i, v in zip(idx, enc[k]):
                    col[i] = v
    return out


def _collate(enc, idx, pad_id, device):
    L = max(len(enc["input_ids"][i]) for i in idx)
    ids = torch.full((len(idx), L), pad_id, dtype=torch.long)
    att = torch.zeros((len(idx), L), dtype=torch.long)
    tt = torch.zeros((len(idx), L), dtype=torch.long) if "token_type_ids" in enc else None
    for r, i in enumerate(idx):
        seq = enc["input_ids"][i]
        ids[r, :len(seq)] = torch.tensor(seq)
        att[r, :len(seq)] = 1
        if tt is not None:
            tt[r, :len(seq)] = torch.tensor(enc["token_type_ids"][i])
    batch = {"input_ids": ids.to(device), "attention_mask": att.to(device)}
    if tt is not None:
        batch["token_type_ids"] = tt.to(device)
    return batch


def train_batches(lengths, batch_size, rng, bucket=50):
    """Shuffled batches of similar lengths (shuffle, sort within chunks of ``bucket`` batches,
    shuffle the batches): far less padding than plain shuffling, still random."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * bucket
    batches = []
    for s in range(0, len(order), chunk):
        part = order[s:s + chunk]
        part = part[np.argsort([lengths[i] for i in part], kind="stable")]
        batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def label_batches(enc, idx, batch_size):
    """The labelling pass's batches: position arrays into ``idx`` (the rows of ``enc`` to label),
    the rows sorted by length (stable) and cut into runs of ``batch_size``, shortest first, so that
    each batch is padded to little more than its own answers."""
    lens = np.asarray([len(enc["input_ids"][i]) for i in idx])
    order = np.argsort(lens, kind="stable")
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


def predict_progress(n_done, n_batches, elapsed, done, total, how=""):
    """The labelling pass's progress line; the time left estimated from the word pieces done / all."""
    return f"    predict {n_done}/{n_batches} batches{how}  {elapsed:.0f}s (eta {elapsed / done * (total - done):.0f}s)"


@torch.no_grad()
def predict_logits(model, enc, idx=None, batch_size=64, device=None, pad_id=0, progress=None, bf16=False):
    """Logits (float64 array, rows in the order of ``idx``) for the encoded rows, in the batches of
    :func:`label_batches`; ``bf16``: under bfloat16 autocast (:func:`teacher_export.precision.autocast`)."""
    device = device or next(model.parameters()).device
    n_all = len(enc["input_ids"])
    idx = np.arange(n_all) if idx is None else np.asarray(idx, dtype=int)
    out = np.zeros((len(idx), model.config.num_labels), dtype=np.float64)
    if len(idx) == 0:
        return out
    batches = label_batches(enc, idx, batch_size)
    cost = np.array([sum(len(enc["input_ids"][i]) for i in idx[pos]) for pos in batches], dtype=np.float64)
    model.eval()
    t0 = time.time()
    for b, pos in enumerate(batches):
        batch = _collate(enc, idx[pos], pad_id, device)
        with autocast(model, device, bf16):
            out[pos] = model(**batch).logits.double().cpu().numpy()
        if progress and (b + 1) % progress == 0:
            log(predict_progress(b + 1, len(batches), time.time() - t0, cost[:b + 1].sum(), cost.sum()))
    return out


#: what early stopping compares between epochs (see ``fine_tune``)
STOP_ON = ("accuracy", "loss")
#: the training losses: cross-entropy, or cross-entropy plus the expected squared score distance
#: (:class:`OrdinalLoss`)
LOSSES = ("ce", "ordinal")


#: validation accuracies within this of the best count as tied (``stop_on="accuracy"``): a few hundred
#: validation answers cannot tell them apart, and the tied epoch of lowest validation loss is the less
#: over-confident teacher (ASAP-SAS item 1: epoch 5, val acc 0.760, loss 0.68, taught a student 0.728
#: on validation; epoch 7, 0.770, loss 0.80, one of 0.668)
TOLERANCE = 0.01


def _order(r):
    """Early stopping's order among tied epochs: the lower validation loss, then the earlier epoch."""
    return round(r["val_loss"], 6), r["epoch"]


def _tied(history, stop_on, tolerance):
    """The epochs that count as best so far: every one with ``stop_on="loss"``, else those within
    ``tolerance`` of the best validation accuracy."""
    if stop_on == "loss":
        return list(history)
    top = max(round(r["val_acc"], 6) for r in history)
    return [r for r in history if round(r["val_acc"], 6) >= round(top - tolerance, 6)]


def kept_epoch(history, stop_on="accuracy", tolerance=TOLERANCE):
    """The epoch early stopping keeps, from the per-epoch records so far (``val_acc``, ``val_loss``):
    ``stop_on="loss"``: the lowest validation loss; ``"accuracy"``: among the epochs whose validation
    accuracy is within ``tolerance`` of the best, the lowest validation loss. Differences under 1e-6
    count as ties (float noise never decides); a tie goes to the earlier epoch. With
    ``tolerance=0``: the best accuracy, ties to the lower loss."""
    return min(_tied(history, stop_on, tolerance), key=_order)["epoch"]


class EarlyStopping:
    """Which epoch to keep and when to stop, from each epoch's validation record (no torch here).

    ``update(rec)`` adds one epoch (``epoch``, ``val_acc``, ``val_loss``) and returns the epochs
    whose weights must be held from now on: those :func:`kept_epoch` may still choose as epochs are
    added (within ``tolerance`` of the best accuracy and not beaten in both accuracy and loss by
    another such epoch; with ``stop_on="loss"`` the lowest loss only). An epoch improves when it
    becomes the kept one or (``"accuracy"``) raises the best accuracy by more than ``tolerance``;
    ``stop`` is true ``patience`` epochs after the last improvement; ``kept`` is the epoch to restore.
    A warm start's epoch 0 (the starting model, validated before any step) is the first record. With
    ``keep_start`` (and ``stop_on="accuracy"``) it stays the kept epoch until a later one beats its validation
    accuracy by more than ``tolerance``: a tie cannot tell two teachers apart, and a changed teacher costs
    a relabelled transfer set.
    """

    def __init__(self, stop_on="accuracy", tolerance=TOLERANCE, patience=2, keep_start=False):
        self.stop_on, self.tolerance, self.patience = stop_on, tolerance, patience
        self.keep_start = keep_start and stop_on == "accuracy"
        self.history, self.kept, self.top, self.last_better = [], 0, None, 0

    def _start_holds(self):
        """A kept start (``keep_start``) that no later epoch has beaten by more than ``tolerance``."""
        h = self.history
        if not self.keep_start or not h or h[0]["epoch"] != 0:
            return False
        bar = round(round(h[0]["val_acc"], 6) + self.tolerance, 6)
        return not any(round(r["val_acc"], 6) > bar for r in h[1:])

    def update(self, rec):
        self.history.append(rec)
        ep, acc = rec["epoch"], round(rec["val_acc"], 6)
        if self.stop_on == "accuracy" and (self.top is None or acc > round(self.top + self.tolerance, 6)):
            self.last_better = ep
        self.top = acc if self.top is None else max(self.top, acc)
        now = 0 if self._start_holds() else kept_epoch(self.history, self.stop_on, self.tolerance)
        if now != self.kept:
            self.kept, self.last_better = now, ep
        return {r["epoch"] for r in self._keepable()} | ({0} if self._start_holds() else set())

    @property
    def stop(self):
        return bool(self.history) and self.history[-1]["epoch"] - self.last_better >= self.patience

    def _keepable(self):
        cands = _tied(self.history, self.stop_on, self.tolerance)
        if self.stop_on == "loss":
            return [min(cands, key=_order)]
        return [r for r in cands if not any(round(o["val_acc"], 6) >= round(r["val_acc"], 6) and _order(o) < _order(r)
                                            for o in cands)]


@dataclass
class FitResult:
    model: object
    history: list = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    seconds: float = 0.0
    train_idx: list = field(default_factory=list)
    optimizer: str = "AdamW"


def fine_tune(model, enc, y, train_idx, val_idx=None, *, epochs=6, patience=2, lr=5e-5,
              batch_size=16, warmup=0.1, weight_decay=0.01, seed=0, device=None, pad_id=0,
              progress_every=20, class_weight=None, tag="", freeze_embeddings=False, stop_on="accuracy",
              tolerance=TOLERANCE, bf16=False, validate_start=False, loss="ce", y2=None):
    """Fine-tune ``model`` in place on rows ``train_idx`` of ``enc`` (labels ``y``, indexed like
    ``enc``). With ``val_idx``: early stopping with ``patience`` and the best epoch's weights
    restored, the epoch being :func:`kept_epoch`'s (``stop_on``, ``tolerance``). An epoch improves
    when it becomes the kept one or (``stop_on="accuracy"``) raises the best validation accuracy by
    more than ``tolerance``; training stops ``patience`` epochs after the last improvement. Only the
    weights of epochs that can still be kept are held (in memory, on the CPU). Without
    ``val_idx``: exactly ``epochs`` epochs. ``bf16``: the steps and the validation passes under bfloat16
    autocast (:mod:`teacher_export.precision`; the weights stay float32). ``validate_start`` (a warm
    start, ``fit --warm-from``): with ``val_idx``, the model as it comes is validated before any step and
    recorded as epoch 0 (``loss`` None) and kept unless a later epoch beats its validation accuracy by more
    than ``tolerance`` (:class:`EarlyStopping`'s ``keep_start``): then the weights are restored unchanged, and
    the training that follows is the same as without it (validating draws no random numbers). ``loss``:
    "ce" (cross-entropy) or "ordinal" (:class:`OrdinalLoss`); validation stays cross-entropy either way.
    ``y2``: a second rater's class index per row (-1: none); a training row's target is then
    :func:`rater_targets`' (needs ``loss="ce"``); validation stays on ``y``."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
    if stop_on not in STOP_ON:
        raise ValueError(f"stop_on must be one of {STOP_ON}, not {stop_on!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), not {tolerance!r}")
    set_seed(seed)
    device = device or pick_device()
    model.to(device)
    train_idx = np.asarray(train_idx, dtype=int)
    y_t = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if y2 is not None:
        if loss != "ce":
            raise ValueError(f"a second rater's scores need loss 'ce', not {loss!r}")
        y_t = torch.as_tensor(rater_targets(y, y2, model.config.num_labels), dtype=torch.float32)
    rng = np.random.default_rng(seed)
    total = (len(train_idx) + batch_size - 1) // batch_size * epochs
    opt, sched = _optimizer(model, lr, weight_decay, int(round(warmup * total)), total, freeze_embeddings)
    cw = torch.as_tensor(class_weight, dtype=torch.float32, device=device) if class_weight is not None else None
    loss_fn = OrdinalLoss(weight=cw) if loss == "ordinal" else torch.nn.CrossEntropyLoss(weight=cw)
    step = _Step(model, opt, sched, loss_fn, enc, pad_id, device, bf16)
    res = FitResult(model=model, train_idx=train_idx.tolist(),
                    optimizer="AdamW (fused)" if opt.defaults.get("fused") else "AdamW")
    stopping, states = EarlyStopping(stop_on, tolerance, patience, keep_start=validate_start), {}
    t_start = time.time()
    if validate_start and val_idx is not None and len(val_idx):
        rec = {"epoch": 0, "loss": None, "seconds": 0.0,
               **_validate(model, enc, y, val_idx, max(64, batch_size), device, pad_id, bf16)}
        rec["seconds"] = round(time.time() - t_start, 1)
        log(f"{tag}epoch 0 (the previous teacher)  val loss {rec['val_loss']:.4f}  val acc {rec['val_acc']:.4f}  "
            f"{rec['seconds']:.0f}s")
        res.history.append(rec)
        res.best_epoch = _hold(model, rec, stopping, states)
    for ep in range(1, epochs + 1):
        t0 = time.time()
        loss = _train_epoch(step, y_t, train_idx, batch_size, rng, progress_every, f"  {tag}epoch {ep}")
        rec = {"epoch": ep, "loss": loss, "seconds": round(time.time() - t0, 1)}
        if val_idx is None or not len(val_idx):
            log(f"{tag}epoch {ep}/{epochs}  loss {rec['loss']:.4f}  {rec['seconds']:.0f}s")
            res.history.append(rec)
            res.epochs_run = ep
            res.best_epoch = ep
            continue
        rec.update(_validate(model, enc, y, val_idx, max(64, batch_size), device, pad_id, bf16))
        rec["seconds"] = round(time.time() - t0, 1)
        log(f"{tag}epoch {ep}/{epochs}  loss {rec['loss']:.4f}  val loss {rec['val_loss']:.4f}  "
            f"val acc {rec['val_acc']:.4f}  {rec['seconds']:.0f}s")
        res.history.append(rec)
        res.epochs_run = ep
        res.best_epoch = _hold(model, rec, stopping, states)
        if stopping.stop:
            log(f"{tag}early stop: no val-{stop_on} improvement for {patience} epochs; "
                f"restoring epoch {stopping.kept}")
            break
    if states:
        model.load_state_dict(states[stopping.kept])
    res.seconds = round(time.time() - t_start, 1)
    model.eval()
    return res


def rater_targets(y, y2, n_classes):
    """The training targets (n, K) of two raters: row i is the mean of the one-hot rows of ``y[i]``
    and ``y2[i]`` (just ``y[i]``'s where ``y2[i]`` is -1; zeros where ``y[i]`` is -1), so an answer the
    raters scored apart is taught as uncertain between their scores::

        t_ik = ([y_i = k] + [y2_i = k]) / 2   (y2_i given),   [y_i = k]   (otherwise)

    The cross-entropy with these targets, −Σ_k t_ik log p_ik, is the mean of the two raters' losses."""
    y, y2 = np.asarray(y, dtype=np.int64), np.asarray(y2, dtype=np.int64)
    if y.shape != y2.shape:
        raise ValueError(f"y and y2 differ in shape: {y.shape} and {y2.shape}")
    eye = np.eye(n_classes, dtype=np.float64)
    t = np.where((y >= 0)[:, None], eye[np.clip(y, 0, None)], 0.0)
    two = (y >= 0) & (y2 >= 0)
    t[two] = (t[two] + eye[y2[two]]) / 2
    return t


class OrdinalLoss(torch.nn.Module):
    """Cross-entropy plus the expected squared distance between the predicted and the true score, for
    scores that are ordered (QWK counts a 0 given to a 2 four times a 1 given to a 2)::

        p = softmax(z) (n, K),  D_ik = (k − y_i)² / (K − 1)²
        L = CE(z, y) + alpha · mean_i Σ_k p_ik · D_ik

    ``weight``: class weights of the cross-entropy term (None: none)."""

    def __init__(self, weight=None, alpha=1.0):
        super().__init__()
        self.ce, self.alpha = torch.nn.CrossEntropyLoss(weight=weight), float(alpha)

    def forward(self, z, y):
        k = torch.arange(z.shape[1], device=z.device, dtype=z.dtype)
        d = (k[None, :] - y[:, None].to(z.dtype)) ** 2 / max(z.shape[1] - 1, 1) ** 2
        return self.ce(z, y) + self.alpha * (torch.softmax(z, dim=1) * d).sum(1).mean()


def _hold(model, rec, stopping, states):
    """Add the validated epoch ``rec`` to ``stopping``; hold the model's weights in ``states`` (on the
    CPU, by epoch) while that epoch can still be kept, and drop those of epochs that no longer can.
    Returns the epoch kept so far."""
    live = stopping.update(rec)
    if rec["epoch"] in live:
        states[rec["epoch"]] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    for e in [e for e in states if e not in live]:
        del states[e]
    return stopping.kept


def _warmup_then_decay(step, n_warm, total):
    """The learning rate's factor at ``step``: linear warm-up over ``n_warm`` steps, then linear decay to 0."""
    if step < n_warm:
        return (step + 1) / max(1, n_warm)
    return max(0.0, (total - step) / max(1, total - n_warm))


def _optimizer(model, lr, weight_decay, n_warm, total, freeze_embeddings):
    """AdamW (no weight decay on biases and norms) and its warm-up-then-decay schedule over ``total`` steps."""
    if freeze_embeddings:  # the word-embedding table: ~half of MiniLM's weights, a tenth of the step time
        model.get_input_embeddings().weight.requires_grad_(False)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters()
                    if p.requires_grad and not any(k in n for k in no_decay)],
         "weight_decay": weight_decay},
        {"params": [p for n, p in model.named_parameters()
                    if p.requires_grad and any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    opt = adamw(groups, lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(_warmup_then_decay, n_warm=n_warm, total=total))
    return opt, sched


@dataclass
class _Step:
    """What one optimiser step needs: the model, optimiser, schedule, loss and the encoded rows."""
    model: object
    opt: object
    sched: object
    loss_fn: object
    enc: dict
    pad_id: int
    device: object
    bf16: bool = False


def _train_epoch(step, y_t, train_idx, batch_size, rng, progress_every, what):
    """One epoch over ``train_idx`` in length-bucketed batches (gradient norm clipped at 1); returns
    the mean training loss. ``what`` starts the progress lines (every ``progress_every`` batches)."""
    step.model.train()
    t0 = time.time()
    tot, nseen = 0.0, 0
    lengths = [len(step.enc["input_ids"][i]) for i in train_idx]
    batches = train_batches(lengths, batch_size, rng)
    for b, pos in enumerate(batches):
        idx = train_idx[pos]
        batch = _collate(step.enc, idx, step.pad_id, step.device)
        with autocast(step.model, step.device, step.bf16):
            loss = step.loss_fn(step.model(**batch).logits.float(), y_t[idx].to(step.device))
        step.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in step.model.parameters() if p.requires_grad], 1.0)
        step.opt.step()
        step.sched.step()
        tot += loss.item() * len(idx)
        nseen += len(idx)
        if progress_every and (b + 1) % progress_every == 0:
            el = time.time() - t0
            log(f"{what} batch {b + 1}/{len(batches)}  loss {tot / nseen:.4f}  "
                f"{el:.0f}s (eta {el / (b + 1) * (len(batches) - b - 1):.0f}s)")
    return tot / max(1, nseen)


def _validate(model, enc, y, val_idx, batch_size, device, pad_id, bf16=False):
    """``{"val_loss": mean cross-entropy, "val_acc": accuracy}`` on the rows ``val_idx``."""
    z = predict_logits(model, enc, val_idx, batch_size=batch_size, device=device, pad_id=pad_id, bf16=bf16)
    yv = np.asarray(y)[np.asarray(val_idx, dtype=int)]
    p = softmax(z)
    vloss = float(-np.mean(np.log(np.clip(p[np.arange(len(yv)), yv], 1e-12, None))))
    return {"val_loss": vloss, "val_acc": float(np.mean(p.argmax(1) == yv))}


def adamw(groups, lr):
    """``torch.optim.AdamW`` with ``fused=True``: one kernel per parameter instead of a dozen
    element-wise passes. On 2 CPU cores the optimiser step over all-MiniLM-L6-v2's 22.7M weights takes
    0.03 s instead of 0.13–0.15 s: a training step 1.11× faster on ASAP-SAS item 1's answers (880 word
    pieces per batch of 16), 1.31× on SciEntsBank's shorter ones (``docs/decisions/teacher-step.md``).
    The weights agree with the plain loop's to float rounding (~3e-8 after 20 steps). A torch without
    the fused CPU kernel (before 2.4) gets the plain loop (the optimiser's ``defaults["fused"]`` says
    which ran)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=lr)


def fresh_copy(model):
    return copy.deepcopy(model)
