"""How tinykd runs on this machine: one explicit, immutable settings object.

Nothing here changes a result, only where and how fast it is computed. The
training loop (:func:`tinykd.train.loop.train`) and the :class:`~tinykd.scoring.scorer.Scorer`
take a :class:`Settings`; the default is :data:`DEFAULT` (``TINYKD_JIT`` in the
environment sets ``jit``).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Settings:
    """Run-time choices.

    parallel : True, False or "auto" — run independent work (the two directions of a
        BiLSTM, two halves of a large batch) on two cores. "auto": only while the machine
        has a core to spare (1-minute load average below cores − ½); on a busy machine the
        threads of a parallel loop wait for each other and the serial loop is several
        times faster.
    split_rows : a one-direction training batch with at least this many rows is split into
        two halves, run in parallel when ``parallel`` allows and one after the other when not:
        the same sums either way, so the weights trained do not depend on the machine's load.
    parallel_score_rows : scoring batches with at least this many rows may run in parallel.
    jit : "auto", "always" or "never" — whether scoring uses the Numba kernels ("never": the
        NumPy path of :mod:`tinykd.nn.reference`). "auto": each
        :class:`~tinykd.scoring.scorer.Scorer` decides from its own state only — a job of at least
        ``numba_min_tokens`` tokens runs Numba, and so does every job after ``numba_after_calls``
        small ones; its first small jobs run NumPy (no wait for Numba's ~0.5 s start). Whether
        Numba is already running in the process does not count: the same calls take the same path.
    blas_threads : BLAS threads while training (None: leave NumPy's BLAS alone). The LSTM
        time loops already use the cores; a multi-threaded BLAS between them only spins.
    score_batch : rows per scoring call, either path (a larger job is batched by length).
    """

    parallel: object = "auto"
    split_rows: int = 16
    parallel_score_rows: int = 64
    jit: str = "auto"
    numba_min_tokens: int = 2000
    numba_after_calls: int = 3
    blas_threads: int | None = 1
    score_batch: int = 256

    def __post_init__(self):
        if self.parallel not in (True, False, "auto"):
            raise ValueError(f"parallel must be True, False or 'auto', got {self.parallel!r}")
        if self.jit not in ("auto", "always", "never"):
            raise ValueError(f"jit must be 'auto', 'always' or 'never', got {self.jit!r}")
        for name in ("split_rows", "parallel_score_rows", "numba_min_tokens", "score_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def use_parallel(self):
        """Whether to run parallel loops now (reads the load average for "auto")."""
        if self.parallel != "auto":
            return bool(self.parallel)
        n = os.cpu_count() or 1
        if n < 2:
            return False
        try:
            return os.getloadavg()[0] < n - 0.5
        except OSError:  # pragma: no cover - no load average on this platform
            return True

    def replace(self, **changes):
        return replace(self, **changes)

    @classmethod
    def from_env(cls):
        """Defaults, with ``jit`` from ``TINYKD_JIT`` when it is set."""
        jit = os.environ.get("TINYKD_JIT", "").strip() or "auto"
        return cls(jit=jit if jit in ("auto", "always", "never") else "auto")


def blas_threads(threads):
    """A context in which NumPy's BLAS runs on ``threads`` threads (None: as it is). A
    multi-threaded BLAS may sum in another order than a single-threaded one, so where results must
    not depend on the machine (a Dask worker runs with one BLAS thread), tinykd computes with one.
    (threadpoolctl, a scikit-learn dependency; a no-op without it.)"""
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(threads, user_api="blas")


DEFAULT = Settings.from_env()
