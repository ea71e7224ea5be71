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

from tinykd.errors import check_average
from tinykd.train.losses import kd_loss, log_softmax
from tinykd.train.optim import Adam


class TrainData:
    """Encoded training rows: ``ids`` (n, L), ``lengths`` (n,), labels ``y`` (n,) with −1
    for an unlabeled (transfer) row, and optional ``teacher`` probabilities (n, K) with
    NaN rows where no teacher row exists."""

    def __init__(self, ids, lengths, y, teacher=None):
        self.ids = np.ascontiguousarray(ids, dtype=np.int32)
        self.lengths = np.ascontiguousarray(lengths, dtype=np.int32)
        self.y = np.asarray(y, dtype=np.int64)
        self.teacher = None if teacher is None else np.asarray(teacher, dtype=np.float64)
        n = len(self.lengths)
        if self.ids.shape[0] != n or self.y.shape != (n,):
            raise ValueError("ids, lengths and y must have the same number of rows")
        if self.teacher is not None and self.teacher.shape[0] != n:
            raise ValueError(f"teacher has {self.teacher.shape[0]} rows, data has {n}")

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


def _print_progress(rec, epochs, stream):
    va = "" if rec["val_loss"] is None else f"  val_loss {rec['val_loss']:.4f}  val_acc {rec['val_acc']:.3f}"
    print(f"epoch {rec['epoch']:>3}/{epochs}  loss {rec['loss']:.4f}{va}  {rec['seconds']:.1f}s",
          file=stream, flush=True)


def _blas_limit(threads):
    if threads is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a scikit-learn dependency
        return None
    return threadpool_limits(threads, user_api="blas")


def _announce_compile(net, stream):
    """One line on screen when the training kernels have never been compiled here."""
    from tinykd.train import _optim_kernels as ok
    from tinykd.nn import _jit, _lstm_kernels as lk, _pool_kernels as pk

    kernels = [lk._fwd_serial, lk._bwd_serial, ok.adam_kernel, ok.sq_norm]
    if net.config["pooling"] == "max":
        kernels += [pk.max_over_time, pk.max_over_time_backward]
    _jit.announce_compile(kernels, "training", "15-20 s", stream)


def train(net, data, val=None, *, lam=0.0, temperature=1.0, soft_loss="ce", epochs=40, batch_size=32, lr=1e-3,
          patience=5, clip_norm=5.0, seed=0, verbose=True, stream=None, on_epoch=None, settings=None, average=None):
    """Train ``net`` in place on ``data`` (a :class:`TrainData`); return a history dict.

    ``soft_loss``: the soft term's form, :data:`tinykd.train.losses.SOFT_LOSSES`.
    Each epoch shuffles with ``np.random.default_rng(seed)``; so do dropout masks.
    Early stopping watches ``val`` loss (training loss if there is no ``val``),
    stops after ``patience`` epochs without improvement, and restores the best
    weights. ``history`` has per-epoch records, ``best_epoch`` and ``stopped``
    (``"patience"``, ``"epochs"``, ``"non-finite loss"`` or ``"interrupted"``).
    ``settings`` (:class:`tinykd.settings.Settings`): cores and BLAS threads; results do not
    depend on it.

    ``average`` (None: off): Polyak averaging over about the last ``average`` epochs — an
    exponential moving average of the weights, with S = ⌈n / batch_size⌉ steps per epoch,
    ``β = 1 − 1 / (average · S)``, after every step ``θ̄ ← β θ̄ + (1 − β) θ`` (θ̄₀ = 0, read
    debiased as θ̄ / (1 − βᵗ)). Validation, early stopping and the weights returned are then the
    average's; training steps go on from the live weights.
    """
    from tinykd.settings import DEFAULT

    settings = DEFAULT if settings is None else settings
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(data) == 0:
        raise ValueError("no training rows")
    check_average(average)
    stream = sys.stderr if stream is None else stream
    rng = np.random.default_rng(seed)
    opt = Adam(net.params, lr=lr, clip_norm=clip_norm)
    soft_all = None
    if data.teacher is not None:
        soft_all = np.isfinite(data.teacher).all(axis=1)
    best_loss, best_params, best_epoch, bad = np.inf, net.params.copy(), 0, 0
    history = {"epochs": [], "best_epoch": 0, "stopped": "epochs"}
    n = len(data)
    beta = None if average is None else 1.0 - 1.0 / max(1.0, average * -(-n // batch_size))
    avg, t_avg = None if beta is None else np.zeros(net.params.shape, dtype=np.float64), 0
    if verbose:
        _announce_compile(net, stream)
    limit = _blas_limit(settings.blas_threads)
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            order = rng.permutation(n)
            par = settings.use_parallel()
            total, count, finite = 0.0, 0, True
            for s in range(0, n, batch_size):
                idx = order[s:s + batch_size]
                ids, lens, y, tp = data.batch(idx)
                hm = y >= 0
                sm = None if soft_all is None else soft_all[np.sort(idx)]
                z, cache = net.forward(ids, lens, training=True, rng=rng, parallel=par)
                teacher = None
                if tp is not None and sm.any():
                    teacher = np.where(sm[:, None], tp, 1.0 / tp.shape[1])
                loss, dz, _ = kd_loss(z, np.where(hm, y, 0), teacher, lam=lam, temperature=temperature,
                                      hard_mask=hm, soft_mask=sm, soft=soft_loss)
                loss += net.penalty()
                if not np.isfinite(loss):
                    finite = False
                    break
                net.backward(dz, cache)
                opt.step(net.grads)
                if avg is not None:
                    avg *= beta
                    avg += (1.0 - beta) * net.params
                    t_avg += 1
                total += loss * len(idx)
                count += len(idx)
            if not finite or not np.isfinite(net.params).all():
                history["stopped"] = "non-finite loss"
                print(f"epoch {epoch}: loss is not finite; stopping and keeping the best weights "
                      f"(epoch {best_epoch})", file=stream, flush=True)
                break
            rec = {"epoch": epoch, "loss": total / max(count, 1), "val_loss": None, "val_acc": None}
            live = None
            if avg is not None:  # the averaged weights are the ones validated and kept
                live = net.params.copy()
                net.params[:] = avg / (1.0 - beta ** t_avg)
            if val is not None and len(val):
                rec["val_loss"], rec["val_acc"] = evaluate_loss(net, val, parallel=par)
            rec["seconds"] = time.perf_counter() - t0
            history["epochs"].append(rec)
            if verbose:
                _print_progress(rec, epochs, stream)
            if on_epoch is not None:
                on_epoch(rec)
            watch = rec["val_loss"] if rec["val_loss"] is not None else rec["loss"]
            if watch < best_loss - 1e-6:
                best_loss, best_epoch, bad = watch, epoch, 0
                best_params[:] = net.params
            if live is not None:
                net.params[:] = live
            if best_epoch != epoch:
                bad += 1
                if bad >= patience:
                    history["stopped"] = "patience"
                    break
    except KeyboardInterrupt:
        history["stopped"] = "interrupted"
        print("interrupted: keeping the best weights so far", file=stream, flush=True)
    finally:
        if limit is not None:
            limit.restore_original_limits()
    net.params[:] = best_params  # the initial weights if no epoch finished
    history["best_epoch"] = best_epoch
    history["best_val_loss"] = None if not np.isfinite(best_loss) else float(best_loss)
    return history
