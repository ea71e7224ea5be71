"""The one home of every training option and its default: :class:`TrainOptions`.

``fit``, ``fit_items``, :class:`~tinykd.estimator.KDClassifier`, the command line, ``distill`` and the
Dask face all carry one of these; it is checked once, when it is made, and a bad value is an
:class:`~tinykd.errors.OptionError` naming the option.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

import numpy as np

from tinykd.errors import OptionError, check_average, check_seed
from tinykd.nn.network import make_config
from tinykd.train.losses import SOFT_LOSSES

#: λ of the soft term when teacher probabilities are given and ``lam`` is None (docs/decisions/student-recipe.md)
DEFAULT_LAM = 4.0
#: the largest λ (the paper's grid is 0.5–16): beyond it the soft term's loss can overflow
MAX_LAM = 1000.0
#: the string values of ``offsets``
OFFSETS_MODES = ("plain", "bagged")
#: the temperatures T accepted: beyond them T² (or 1/T) overflows the loss
TEMPERATURES = (0.01, 100.0)


def _whole(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise OptionError(name, f"{{opt}} must be > 0 (a whole number), got {value!r}")


def _real(value):
    return not isinstance(value, bool) and isinstance(value, (numbers.Real, np.number))


@dataclass(frozen=True)
class TrainOptions:
    """How one student is trained (the network, the loss, the optimiser, early stopping).

    preset : "7t", "falling_weights", "gelatin", "bathtub" (the paper's) or "wide" (tinykd's;
        :data:`tinykd.nn.network.PRESETS`); None: the default network before ``config``.
    config : overrides of the preset's network settings (a dict; see :func:`tinykd.nn.network.make_config`).
    lam : λ of Eq. 4; None: :data:`DEFAULT_LAM` with teacher probabilities, 0 without (0 = the plain NN).
    temperature : T of the soft term (1 = Eq. 4 exactly).
    soft_loss : "ce" (Eq. 4) or "mse" (the teacher's logits, centred; :mod:`tinykd.train.losses`).
    ordinal : μ of the expected-score term (the student's expected score against the teacher's, on the rows
        with a teacher row; :mod:`tinykd.train.losses`); 0: none. Needs numeric (ordered) scores.
    epochs, batch_size, lr, patience, clip_norm : the most epochs, rows per Adam step, its learning rate,
        epochs without a better validation loss before stopping, the gradient's norm clip.
    validation_fraction : the share of the labelled training rows held out for early stopping when no
        validation rows are given.
    seed : every random choice (init, shuffling, dropout, holdout).
    offsets : choose per-class decision offsets on the validation rows (:mod:`tinykd.train.offsets`): True, False,
        "plain" (only for a student trained without a teacher; docs/decisions/student-offsets.md) or "bagged" (every
        student, the offsets averaged over bootstrap resamples of the rows; docs/decisions/offsets-bagged.md).
    average : None, or Polyak averaging of the weights over about the last ``average`` epochs.
    long_weight : how many times per epoch a training row (scored or transfer) counts when it is at least as
        long, in the tokens the student reads, as the 75th percentile of the scored training answers; 1: once,
        like every row (docs/decisions/student-long-answers.md).
    balance_transfer : weigh each transfer row in the loss so that the teacher's class mix (its arg-max) on the
        transfer rows matches its mix on the scored training answers (:func:`tinykd.train.fitting.balance_weights`;
        docs/decisions/transfer-balance.md); False: every row weighs 1.
    lr_plateau : None, or halve the learning rate each time the validation loss has not improved for this many
        epochs (counted from the best epoch: with 2 and ``patience`` 5, after 2 and 4 epochs without a better
        loss; docs/decisions/student-lr-plateau.md).
    """

    preset: str | None = "7t"
    config: dict | None = field(default=None, hash=False)
    lam: float | None = None
    temperature: float = 1.0
    soft_loss: str = "ce"
    ordinal: float = 0.0
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 5
    clip_norm: float = 5.0
    validation_fraction: float = 0.125
    seed: int = 0
    offsets: bool | str = True
    average: float | None = None
    long_weight: int = 1
    balance_transfer: bool = False
    lr_plateau: int | None = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience", "long_weight"):
            _whole(name, getattr(self, name))
        if not _real(self.lr) or not 0 < self.lr < float("inf"):
            raise OptionError("lr", f"{{opt}} must be > 0, got {self.lr!r}")
        if not _real(self.clip_norm) or not 0 < self.clip_norm < float("inf"):
            raise OptionError("clip_norm", f"{{opt}} must be > 0, got {self.clip_norm!r}")
        lo, hi = TEMPERATURES
        if not _real(self.temperature) or not lo <= self.temperature <= hi:
            raise OptionError("temperature", f"{{opt}} must be between {lo:g} and {hi:g}, got {self.temperature!r}")
        if self.lam is not None and (not _real(self.lam) or not 0 <= self.lam <= MAX_LAM):
            raise OptionError("lam", f"{{opt}} must be >= 0 and at most {MAX_LAM:g}, got {self.lam!r}")
        if self.soft_loss not in SOFT_LOSSES:
            raise OptionError("soft_loss", f"{{opt}} must be one of {', '.join(SOFT_LOSSES)}, got {self.soft_loss!r}")
        if not _real(self.ordinal) or not 0 <= self.ordinal <= MAX_LAM:
            raise OptionError("ordinal", f"{{opt}} must be >= 0 and at most {MAX_LAM:g}, got {self.ordinal!r}")
        if not _real(self.validation_fraction) or not 0.0 < self.validation_fraction < 1.0:
            raise OptionError("validation_fraction",
                              f"{{opt}} must be between 0 and 1, got {self.validation_fraction!r}")
        check_seed(self.seed)
        if not isinstance(self.offsets, (bool, np.bool_)) and self.offsets not in OFFSETS_MODES:
            raise OptionError("offsets", f"{{opt}} must be True, False, \"plain\" or \"bagged\", got {self.offsets!r}")
        if not isinstance(self.balance_transfer, (bool, np.bool_)):
            raise OptionError("balance_transfer", f"{{opt}} must be True or False, got {self.balance_transfer!r}")
        check_average(self.average)
        if self.lr_plateau is not None:
            _whole("lr_plateau", self.lr_plateau)
        if self.config is not None and not isinstance(self.config, dict):
            raise OptionError("config", f"{{opt}} must be a dict of network settings, got {type(self.config).__name__}")
        self.network()  # an unknown preset or a bad config value, now

    def network(self):
        """The full network config: the defaults, then the preset, then ``config``."""
        return make_config(self.preset, **(self.config or {}))

    def replace(self, **changes):
        """A copy with ``changes`` (checked as a new object is); unknown names: ``TypeError`` naming them."""
        unknown = sorted(set(changes) - set(NAMES))
        if unknown:
            raise TypeError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
        return dataclasses.replace(self, **changes)

    def lam_for(self, has_teacher):
        """λ as used: the given one, or :data:`DEFAULT_LAM` with a teacher; always 0 without one."""
        if not has_teacher:
            return 0.0
        return DEFAULT_LAM if self.lam is None else float(self.lam)

    def offsets_for(self, has_teacher):
        """Whether a student with (``has_teacher``) or without a teacher gets decision offsets: False, True or
        "bagged" (:func:`tinykd.train.offsets.fit_offsets_bagged`)."""
        if self.offsets == "plain":
            return not has_teacher
        return "bagged" if self.offsets == "bagged" else bool(self.offsets)

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


#: the option names, in declaration order
NAMES = tuple(f.name for f in dataclasses.fields(TrainOptions))


def make_options(options=None, **values):
    """``options`` (a :class:`TrainOptions`, or None for the defaults) with ``values`` replacing fields."""
    if options is not None and not isinstance(options, TrainOptions):
        raise TypeError(f"options must be a TrainOptions, got {type(options).__name__}")
    base = TrainOptions() if options is None else options
    return base.replace(**values) if values else base
