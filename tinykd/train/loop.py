"""The training loop: seeded mini-batches, Adam, early stopping with best-weight restore.

Arrays in, a trained :class:`~tinykd.nn.network.StudentNet` and a history out.
The loss is :func:`tinykd.train.losses.kd_loss` (plus the weight penalties).
Validation loss is plain cross-entropy on the hard labels — the score we
care about — so λ and T do not change what "best" means.

If the loss turns NaN or infinite, training stops at once, the best weights
so far are restored and the history says why. Ctrl-C stops training the
same way (best weights restored, ``stopped = "interrupted"``), and the
caller decides whether to save.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from tinykd.settings import blas_threads
from tinykd.train.losses import kd_loss, log_softmax
from tinykd.train.optim import Adam
from tinykd.train.options import TrainOptions


class TrainData:
    """Encoded training rows: ``ids`` (n, L), ``lengths`` (n,), labels ``y`` (n,) with −1
    for an unlabeled (transfer) row, optional ``teacher`` probabilities (n, K) with
    NaN rows where no teacher row exists, and optional row ``weights`` (n,) in the loss."""

    def __init__(self, ids, lengths, y, teacher=None, weights=None):
        self.ids = np.ascontiguousarray(ids, dtype=np.int32)
        self.lengths = np.ascontiguousarray(lengths, dtype=np.int32)
        self.y = np.asarray(y, dtype=np.int64)
        self.teacher = None if teacher is None else np.asarray(teacher, dtype=np.float64)
        n = len(self.lengths)
        if self.ids.shape[0] != n or self.y.shape != (n,):
            raise ValueError("ids, lengths and y must have the same number of rows")
        if self.teacher is not None and self.teacher.shape[0] != n:
            raise ValueError(f"teacher has {self.teacher.shape[0]} rows, data has {n}")
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        if self.weights is not None and self.weights.shape != (n,):
            raise ValueError(f"weights has shape {self.weights.shape}, data has {n} rows")

    def __len__(self):
        return len(self.lengths)

    def batch(self, idx):
        idx = np.sort(idx)
        lens = self.lengths[idx]
        L = max(1, int(lens.max()))
        t = None if self.teacher is None else self.teacher[idx]
        return self.ids[idx, :L], lens, self.y[idx], t


def evaluate_loss(net, data, batch_size=256, parallel=False):
    """Mean hard-label cross-entropy and accuracy over the labeled rows of ``data``."""
    z = net.predict_logits(data.ids, data.lengths, batch_size, parallel=parallel).astype(np.float64)
    lab = data.y >= 0
    logq = log_softmax(z[lab])
    y = data.y[lab]
    loss = float(-logq[np.arange(len(y)), y].mean()) if len(y) else float("nan")
    acc = float((logq.argmax(1) == y).mean()) if len(y) else float("nan")
    return loss, acc


def evaluate_fidelity(net, data, batch_size=256, parallel=False):
    """The student's fidelity to its teacher on ``data`` (rows with ``teacher`` probabilities p):
    the mean KL(p ‖ q) = Σ_k p_k (log p_k − log q_k) and the agreement of the arg-maxes."""
    z = net.predict_logits(data.ids, data.lengths, batch_size, parallel=parallel).astype(np.float64)
    logq, p = log_softmax(z), data.teacher
    logp = np.log(np.clip(p, 1e-12, None))
    kl = float((p * (logp - logq)).sum(axis=1).mean())
    return kl, float((logq.argmax(1) == p.argmax(1)).mean())


def _print_progress(rec, epochs, stream):
    va = "" if rec["val_loss"] is None else f"  val_loss {rec['val_loss']:.4f}  val_acc {rec['val_acc']:.3f}"
    if rec.get("fid_kl") is not None:
        va += f"  fidelity KL {rec['fid_kl']:.4f}  agreement {rec['fid_agree']:.3f}"
    print(f"epoch {rec['epoch']:>3}/{epochs}  loss {rec['loss']:.4f}{va}  {rec['seconds']:.1f}s",
          file=stream, flush=True)


def _announce_compile(net, stream):
    """One line on screen when the training kernels have never been compiled here."""
    from tinykd.train import _optim_kernels as ok
    from tinykd.nn import _jit, _lstm_kernels as lk, _pool_kernels as pk

    kernels = [lk._fwd_serial, lk._bwd_serial, ok.adam_kernel, ok.sq_norm]
    if net.config["pooling"] == "max":
        kernels += [pk.max_over_time, pk.max_over_time_backward]
    _jit.announce_compile(kernels, "training", "15-20 s", stream)


class _Run:
    """The state of one training run: the seeded generator (shuffling and dropout), Adam, the
    weight average and the best weights so far."""

    def __init__(self, net, data, options):
        self.net, self.data, self.options = net, data, options
        self.lam = options.lam_for(data.teacher is not None)
        self.rng = np.random.default_rng(options.seed)
        self.opt = Adam(net.params, lr=options.lr, clip_norm=options.clip_norm)
        self.soft_all = None if data.teacher is None else np.isfinite(data.teacher).all(axis=1)
        self.best_loss, self.best_params, self.best_epoch, self.bad = np.inf, net.params.copy(), 0, 0
        steps = -(-len(data) // options.batch_size)  # S, the steps of one epoch
        self.beta = None if options.average is None else 1.0 - 1.0 / max(1.0, options.average * steps)
        self.avg = None if self.beta is None else np.zeros(net.params.shape, dtype=np.float64)
        self.t_avg = 0

    def epoch(self, parallel):
        """One pass over the rows in a fresh seeded order; the mean loss, or None once it is not finite."""
        net, data, o = self.net, self.data, self.options
        order = self.rng.permutation(len(data))
        total, count = 0.0, 0
        for s in range(0, len(data), o.batch_size):
            idx = np.sort(order[s:s + o.batch_size])  # the batch's rows in the order batch() gives them
            ids, lens, y, tp = data.batch(idx)
            hm = y >= 0
            sm = None if self.soft_all is None else self.soft_all[idx]
            z, cache = net.forward(ids, lens, training=True, rng=self.rng, parallel=parallel)
            teacher = None
            if tp is not None and sm.any():  # a row without a teacher row: uniform, masked out of the soft term
                teacher = np.where(sm[:, None], tp, 1.0 / tp.shape[1])
            w = None if data.weights is None else data.weights[idx]
            loss, dz, _ = kd_loss(z, np.where(hm, y, 0), teacher, lam=self.lam, temperature=o.temperature,
                                  hard_mask=hm, soft_mask=sm, soft=o.soft_loss,
                                  ordinal=o.ordinal, weights=w)
            loss += net.penalty()
            if not np.isfinite(loss):
                return None
            net.backward(dz, cache)
            self.opt.step(net.grads)
            if self.avg is not None:
                self.avg *= self.beta
                self.avg += (1.0 - self.beta) * net.params
                self.t_avg += 1
            total += loss * len(idx)
            count += len(idx)
        return total / max(count, 1) if np.isfinite(net.params).all() else None

    def use_average(self):
        """Put the debiased average in the net (validated and kept in place of the live weights);
        returns the live weights to put back, or None without averaging."""
        if self.avg is None:
            return None
        live = self.net.params.copy()
        self.net.params[:] = self.avg / (1.0 - self.beta ** self.t_avg)
        return live

    def keep_if_best(self, epoch, watch, live):
        """Remember the net's weights if ``watch`` is the best loss yet; put ``live`` back; returns the
        epochs since the best."""
        if watch < self.best_loss - 1e-6:
            self.best_loss, self.best_epoch, self.bad = watch, epoch, 0
            self.best_params[:] = self.net.params
        if live is not None:
            self.net.params[:] = live
        if self.best_epoch != epoch:
            self.bad += 1
            plateau = self.options.lr_plateau
            if plateau and self.bad % plateau == 0:  # a plateau: smaller steps settle nearer its floor
                self.opt.lr *= 0.5
        return self.bad


def train(net, data, val=None, options=None, *, settings=None, verbose=True, stream=None, on_epoch=None,
          fidelity=None):
    """Train ``net`` in place on ``data`` (a :class:`TrainData`) with ``options`` (a
    :class:`~tinykd.train.options.TrainOptions`; None: the defaults); return a history dict.

    Of the options this uses λ (``options.lam_for(data has a teacher)``), ``temperature``,
    ``soft_loss`` (:data:`tinykd.train.losses.SOFT_LOSSES`), ``epochs``, ``batch_size``, ``lr``,
    ``clip_norm``, ``patience``, ``seed``, ``average`` and ``lr_plateau`` (the learning rate halved after that many
    epochs without a better watched loss, and again after as many more; each record then holds its ``lr``).
    Each epoch shuffles with ``np.random.default_rng(seed)``; so do dropout masks.
    Early stopping watches ``val`` loss (training loss if there is no ``val``) — or, given
    ``fidelity`` (a :class:`TrainData` whose ``teacher`` holds the teacher's probabilities on rows
    not trained on), the student's mean KL(teacher ‖ student) on it (:func:`evaluate_fidelity`) —
    stops after ``patience`` epochs without improvement, and restores the best
    weights. ``history`` has per-epoch records, ``best_epoch`` and ``stopped``
    (``"patience"``, ``"epochs"``, ``"non-finite loss"`` or ``"interrupted"``).
    ``settings`` (:class:`tinykd.settings.Settings`): cores and BLAS threads; results do not
    depend on it. ``on_epoch`` is called with each epoch's record.

    ``average`` (None: off): Polyak averaging over about the last ``average`` epochs — an
    exponential moving average of the weights, with S = ⌈n / batch_size⌉ steps per epoch,
    ``β = 1 − 1 / (average · S)``, after every step ``θ̄ ← β θ̄ + (1 − β) θ`` (θ̄₀ = 0, read
    debiased as θ̄ / (1 − βᵗ)). Validation, early stopping and the weights returned are then the
    average's; training steps go on from the live weights.
    """
    from tinykd.settings import DEFAULT

    options = TrainOptions() if options is None else options
    if not isinstance(options, TrainOptions):
        raise TypeError(f"options must be a TrainOptions, got {type(options).__name__}")
    settings = DEFAULT if settings is None else settings
    if len(data) == 0:
        raise ValueError("no training rows")
    stream = sys.stderr if stream is None else stream
    run = _Run(net, data, options)
    history = {"epochs": [], "best_epoch": 0, "stopped": "epochs"}
    if verbose:
        _announce_compile(net, stream)
    try:
        with blas_threads(settings.blas_threads):
            for epoch in range(1, options.epochs + 1):
                t0 = time.perf_counter()
                par = settings.use_parallel()
                loss = run.epoch(par)
                if loss is None:
                    history["stopped"] = "non-finite loss"
                    print(f"epoch {epoch}: loss is not finite; stopping and keeping the best weights "
                          f"(epoch {run.best_epoch})", file=stream, flush=True)
                    break
                rec = {"epoch": epoch, "loss": loss, "val_loss": None, "val_acc": None}
                live = run.use_average()
                if val is not None and len(val):
                    rec["val_loss"], rec["val_acc"] = evaluate_loss(net, val, parallel=par)
                if fidelity is not None:
                    rec["fid_kl"], rec["fid_agree"] = evaluate_fidelity(net, fidelity, parallel=par)
                rec["seconds"] = time.perf_counter() - t0
                if options.lr_plateau:
                    rec["lr"] = run.opt.lr  # the rate this epoch trained with
                history["epochs"].append(rec)
                if verbose:
                    _print_progress(rec, options.epochs, stream)
                if on_epoch is not None:
                    on_epoch(rec)
                watch = rec["fid_kl"] if fidelity is not None else (
                    rec["val_loss"] if rec["val_loss"] is not None else rec["loss"])
                if run.keep_if_best(epoch, watch, live) >= options.patience:
                    history["stopped"] = "patience"
                    break
    except KeyboardInterrupt:
        history["stopped"] = "interrupted"
        print("interrupted: keeping the best weights so far", file=stream, flush=True)
    net.params[:] = run.best_params  # the initial weights if no epoch finished
    history["best_epoch"] = run.best_epoch
    history["best_val_loss"] = None if not np.isfinite(run.best_loss) else float(run.best_loss)
    return history
