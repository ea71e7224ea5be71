"""What one item's chain needs, as typed values: :class:`ItemChain` (its rows, the teacher's and the
students' options, where its stages live) and :class:`TeacherOptions`; with the recipe's defaults.

An :class:`ItemChain` holds plain values only, so that :func:`tinykd.distill.pipeline.distill_item`
runs it in a loop in one process or as a Dask task (pickled to a worker).
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

from tinykd.errors import OptionError
from tinykd.files.csvfiles import label_sort_key
from tinykd.train.options import TrainOptions

#: λ values of the KD students, the plain NN (λ = 0) trained beside them (docs/decisions/student-recipe.md)
LAMS = (4.0,)
#: the KD students' soft term: the teacher's logits matched by MSE (docs/decisions/student-recipe.md)
SOFT_LOSS = "mse"
#: the presets "auto" trains, the best on validation kept (docs/decisions/student-recipe.md)
AUTO_PRESETS = ("bathtub", "7t")
#: the students average their weights over about the last epoch (docs/decisions/weight-averaging.md)
STUDENT_AVERAGE = 1.0
#: what the KD students stop on and are chosen by: "fidelity" — their agreement with the teacher on rows
#: not trained on (docs/decisions/student-fidelity.md) — or the human validation rows: "validation", the
#: lower log-loss (docs/decisions/student-choice.md), or "accuracy", the higher accuracy (the rule before it)
CHOOSE_ON = "validation"
CHOOSE_ON_VALUES = ("fidelity", "validation", "accuracy")
STOP_ON_VALUES = ("fidelity", "validation")
#: the choice on the validation rows by name (the students' cache key hashes it for "validation")
LOSS_RULE = "the KD student of lower validation log-loss (calibrated probabilities, clipped at 1e-7)"
#: the share of the training answers whose copies are held out of the transfer set to measure fidelity
FIDELITY_FRACTION = 0.125
#: the fidelity rule by name (the students' cache key hashes it: a changed rule is a new name)
FIDELITY_RULE = "fidelity: KL on validation rows and 1/8 of the answers' copies; agreement chooses"
#: the teacher's word vectors by name (the vectors stage's key hashes it: teacher_export.vectors)
VECTORS_RULE = "word vectors: the teacher's last hidden state of [CLS] word [SEP], mean over the word's pieces"
#: the KD students' aliases by name (the vectors stage's key and the students' hash it):
#: docs/decisions/student-aliases.md
ALIASES_RULE = ("aliases: each word of the transfer set and of the teacher's tokenizer outside a KD student's "
                "vocabulary reads as the vocabulary word of the nearest teacher word vector (cosine)")
#: ``teacher_aliases``: "train" — from the start of training (:data:`ALIASES_RULE`); "unseen" — after training,
#: for the words the kept KD student never read (:data:`UNSEEN_RULE`); "outside" — after training, for every word
#: outside its vocabulary (:data:`OUTSIDE_RULE`); None (``--teacher-aliases none``): none
ALIASES_MODES = ("train", "unseen", "outside")
#: the modes whose aliases come after training, in a stage after the students' (which is then the one without)
AFTER_TRAINING = ("unseen", "outside")
#: distill's default: it passed its rule over the eight ``--where`` rows (docs/decisions/student-aliases.md)
ALIASES_DEFAULT = "unseen"
#: the "unseen" stage by name (its key hashes it)
UNSEEN_RULE = ("aliases after training: each word of the teacher's vectors that no training answer, context or "
               "copy holds reads, in the kept KD student, as the vocabulary word of the nearest teacher word vector")
#: the "outside" mode's stage by name (its key hashes it)
OUTSIDE_RULE = ("aliases after training: each word of the teacher's vectors outside the kept KD student's vocabulary "
                "reads as the vocabulary word of the nearest teacher word vector")
#: what the teacher cuts first from an answer and its context over its max length (teacher_export.finetune.encode)
TRUNCATE_VALUES = ("longest", "context")
#: the teacher's precision choices (``tinykd-teacher --bf16``; teacher_export.precision): float32, bfloat16
#: autocast, or bfloat16 where the CPU or GPU supports it
BF16_VALUES = ("off", "on", "auto")
#: how several teachers (``members``) become one: their log-probabilities averaged, or the one of the highest
#: validation QWK labelling alone (docs/decisions/teacher-ensemble.md, teacher-pick.md)
COMBINE_VALUES = ("mean", "pick")
#: the pick's rule by name (the pick stage's key hashes it)
PICK_RULE = "pick: the member of the highest validation QWK, ties to the lower seed"
#: the students' training options; ``lam`` and ``preset`` are set per student from the λ grid and presets
STUDENT_OPTIONS = TrainOptions(soft_loss=SOFT_LOSS, average=STUDENT_AVERAGE)


def student_options(options=None, **values):
    """The students' :class:`~tinykd.train.options.TrainOptions`: ``options`` (None:
    :data:`STUDENT_OPTIONS`) with the ``values`` that are not None replacing its fields."""
    if options is not None and not isinstance(options, TrainOptions):
        raise TypeError(f"options must be a TrainOptions, got {type(options).__name__}")
    base = STUDENT_OPTIONS if options is None else options
    return base.replace(**{k: v for k, v in values.items() if v is not None})


def presets_for(preset):
    """The presets a chain trains: :data:`AUTO_PRESETS` for "auto", else ``preset`` alone."""
    return tuple(AUTO_PRESETS) if preset == "auto" else (preset,)


def _whole(name, value, least=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise OptionError(f"teacher_{name}", f"{{opt}} must be a whole number >= {least}, got {value!r}")


@dataclass(frozen=True)
class TeacherOptions:
    """The teacher's fine-tuning (``tinykd-teacher fit``): options that work across the items here
    without tuning (docs/decisions/teacher-early-stopping.md: patience 1, early stopping on validation
    accuracy with validation accuracies within ``tolerance`` of the best tied, the lowest validation loss
    among them kept; ``stop_on="loss"``: the lowest validation loss). ``bf16``: the teacher's precision
    (:data:`BF16_VALUES`; "off", float32, by default), for its fine-tuning and its labelling alike. A bad
    value is an :class:`~tinykd.errors.OptionError` naming ``teacher_<option>``. ``members``: an ensemble of
    this many teachers (seeds ``seed`` … ``seed + members − 1``, otherwise the same), each labelling the
    transfer set, their log-probabilities averaged (docs/decisions/teacher-ensemble.md); with ``combine="pick"``
    the member of the highest validation QWK labels it alone (docs/decisions/teacher-pick.md)."""

    epochs: int = 10
    patience: int = 1
    lr: float = 8e-5
    batch_size: int = 16
    max_length: int | str = 128  #: word pieces per answer and context; "auto": docs/decisions/teacher-length.md
    stop_on: str = "accuracy"
    tolerance: float = 0.01
    bf16: str = "off"
    members: int = 1
    truncate: str = "longest"  #: :data:`TRUNCATE_VALUES`
    combine: str = "mean"  #: :data:`COMBINE_VALUES`

    def __post_init__(self):
        for name in ("epochs", "patience", "batch_size", "members"):
            _whole(name, getattr(self, name))
        ml = self.max_length
        if ml != "auto" and (isinstance(ml, bool) or not isinstance(ml, numbers.Integral) or ml < 1):
            raise OptionError("teacher_max_length", f"{{opt}} must be auto or a whole number >= 1, got {ml!r}")
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < float("inf"):
            raise OptionError("teacher_lr", f"{{opt}} must be > 0, got {lr!r}")
        if self.stop_on not in ("accuracy", "loss"):
            raise OptionError("teacher_stop_on", f"{{opt}} must be accuracy or loss, got {self.stop_on!r}")
        tol = self.tolerance
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 <= tol < 1:
            raise OptionError("teacher_tolerance", f"{{opt}} must be at least 0 and below 1, got {tol!r}")
        if not isinstance(self.truncate, str) or self.truncate not in TRUNCATE_VALUES:
            raise OptionError("teacher_truncate", f"{{opt}} must be longest or context, got {self.truncate!r}")
        if not isinstance(self.combine, str) or self.combine not in COMBINE_VALUES:
            raise OptionError("teacher_combine", f"{{opt}} must be mean or pick, got {self.combine!r}")
        if self.combine == "pick" and self.members < 2:
            raise OptionError("teacher_combine", f"{{opt}} pick needs --teacher-members 2 or more, got {self.members}")
        if not isinstance(self.bf16, str) or self.bf16 not in BF16_VALUES:
            raise OptionError("teacher_bf16", f"{{opt}} must be off, on or auto, got {self.bf16!r}")

    @classmethod
    def make(cls, options=None):
        """``options``: None (the defaults), a TeacherOptions, or a dict of some of its fields."""
        if options is None or isinstance(options, cls):
            return options or cls()
        unknown = set(options) - set(TEACHER_DEFAULTS)
        if unknown:
            raise OptionError("teacher_options",
                              f"unknown {{opt}} {sorted(unknown)}; known: {sorted(TEACHER_DEFAULTS)}")
        return cls(**options)

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def key_options(self):
        """The options the teacher's cache key hashes: ``tolerance`` only where it can change the run
        (``stop_on="accuracy"``, ``tolerance > 0``), so a work folder made before it existed, or with
        ``stop_on="loss"``, keeps its teachers; ``bf16`` only when not "off" (the same reason). The
        labels stage's key hashes the teacher's, so it changes with ``bf16`` too."""
        d = self.as_dict()
        if self.stop_on == "loss" or not self.tolerance:
            del d["tolerance"]
        if self.bf16 == "off":
            del d["bf16"]
        if self.truncate == "longest":
            del d["truncate"]
        del d["members"], d["combine"]  # each member is a teacher stage of its own (its seed in its key)
        return d


#: the teacher's default options by name (the command line's help shows them)
TEACHER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TeacherOptions)}


@dataclass(frozen=True)
class ItemRows:
    """One item's rows of the data file, every role: ``ids``, ``texts``, ``labels`` (normalised; None:
    unlabelled), ``contexts`` (None: no context column), ``roles`` (train / unlabeled / val / test /
    other, :func:`tinykd.train.splits.assign_roles`) and the labels' ``kind`` (int / float / str)."""

    ids: tuple
    texts: tuple
    labels: tuple
    contexts: tuple | None
    roles: tuple
    kind: str

    def where(self, role):
        """The indices of the rows of ``role`` ("train": the labelled training rows)."""
        return [i for i, r in enumerate(self.roles) if r == role and (role != "train" or self.labels[i] is not None)]

    def take(self, idx):
        """``(texts, labels, contexts)`` of the rows ``idx`` (contexts None without a context column)."""
        return ([self.texts[i] for i in idx], [self.labels[i] for i in idx],
                None if self.contexts is None else [self.contexts[i] for i in idx])

    @property
    def classes(self):
        """The labels of the training rows, sorted (numbers numerically): the students' classes."""
        return sorted({self.labels[i] for i in self.where("train")}, key=label_sort_key)


@dataclass(frozen=True)
class ItemChain:
    """One item's chain — teacher → copies → labels → students — as :func:`tinykd.distill.pipeline.distill`
    makes it. ``item`` None: all rows (no item column); ``name`` names it in the log and the report."""

    work: str  #: the work folder (:class:`tinykd.distill.stages.StageCache`)
    item: str | None
    name: str
    rows_key: str  #: the key of the rows stage, which the later keys hash
    rows_csv: str  #: every row of the data file with its role (what the teacher reads)
    rows: ItemRows
    unlabeled_rows: tuple  #: ``(id, text, context, item)`` of the unlabeled file's rows of this item
    unlabeled_sha: str | None
    teacher_dir: str | None  #: a given fine-tuned teacher (None: fine-tune one)
    teacher_sha: str | None  #: the hash of its ``teacher.json``
    base: str | None  #: the teacher's pre-trained base (None: all-MiniLM-L6-v2)
    teacher: TeacherOptions
    teacher_threads: int | None  #: torch threads of the teacher's processes (None: the worker's, or torch's)
    copies: int | None  #: perturbed copies per training answer (None: :func:`tinykd.distill.copies.auto_copies`)
    augment: dict = field(hash=False)  #: :func:`tinykd.distill.augment.augment`'s options that are set
    preset: str  #: "auto" or the one preset trained
    presets: tuple  #: the presets trained (:func:`presets_for`)
    lams: tuple  #: the KD students' λ grid
    options: TrainOptions  #: the students' options (``preset`` and ``lam`` set per student; their seed)
    seed: int = 0  #: the seed of the rows' split, the teacher and the copies (the students': ``options.seed``)
    choose_on: str = CHOOSE_ON  #: :data:`CHOOSE_ON_VALUES`
    stop_on: str | None = None  #: what the KD students stop on (:data:`STOP_ON_VALUES`; None: ``choose_on``)
    warm_from: str | None = None  #: the previous round's teacher it fine-tunes on from (:mod:`tinykd.distill.warm`)
    warm_sha: str | None = None  #: the SHA-256 of that teacher's weights (the teacher's key hashes it)
    vectors: bool = False  #: the KD students start from the teacher's word vectors (a stage of their own)
    aliases: str | None = None  #: :data:`ALIASES_MODES` (None: none): a KD student's outside words read as inside ones

    @property
    def stops_on(self):
        return self.stop_on or self.choose_on

    def teacher_fit_options(self):
        """The teacher's fine-tuning options of this chain: a warm-started teacher trains at most
        :data:`tinykd.distill.warm.WARM_EPOCHS` epochs after its epoch 0."""
        from tinykd.distill.warm import WARM_EPOCHS

        d = self.teacher.as_dict()
        if self.warm_from:
            d["epochs"] = min(d["epochs"], WARM_EPOCHS)
        return d

    def teacher_key_options(self):
        """What the teacher's key hashes of its options: :meth:`TeacherOptions.key_options`, and for a
        warm start the previous teacher's weights and the warm epochs."""
        d = self.teacher.key_options()
        if self.warm_from:
            d.update(epochs=self.teacher_fit_options()["epochs"], warm_from=self.warm_sha)
        return d
