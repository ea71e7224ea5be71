"""A scikit-learn estimator over raw texts: :class:`KDClassifier`.

    from sklearn.model_selection import cross_val_score
    clf = tinykd.KDClassifier(preset="falling_weights", epochs=20, random_state=0)
    clf.fit(texts, y, teacher_proba=p)          # p: (n, K), columns in sorted label order
    clf.predict(["acid rain dissolves marble"])
    cross_val_score(clf, texts, y, cv=5, params={"teacher_proba": p})

``X`` is a sequence of answer strings (a list, a 1-D array, a pandas Series), or
an (n, 2) array of ``(answer, context)`` pairs when a context such as the
question goes before the answer. Missing texts (``None``/NaN) are blank answers.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from tinykd.errors import MAX_SEED, check_seed
from tinykd.scoring.modelmeta import label_names_for_data
from tinykd.train.fitting import fit as _fit
from tinykd.train.options import TrainOptions

#: the parameters' defaults are the training options' defaults (scikit-learn wants them spelt out)
_D = TrainOptions()


def _as_texts(X):
    """``(texts, contexts or None)`` from X."""
    if isinstance(X, str):
        raise ValueError("X must be a sequence of texts, not a single string; wrap it in a list")
    if hasattr(X, "to_numpy"):  # pandas Series / DataFrame without importing pandas
        X = X.to_numpy()
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2 and arr.shape[1] == 2:
        return [_text(v) for v in arr[:, 0]], [_text(v) for v in arr[:, 1]]
    if arr.ndim != 1:
        raise ValueError(f"X must be a sequence of texts or an (n, 2) array of (text, context) pairs; "
                         f"got shape {arr.shape}")
    return [_text(v) for v in arr], None


def _seed(random_state):
    """The seed of one fit: an int as it is; None, a ``RandomState`` or a ``Generator``: one seed
    drawn from it (None: from NumPy's global generator, as scikit-learn's ``check_random_state``)."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, MAX_SEED + 1))
    if random_state is None or isinstance(random_state, np.random.RandomState):
        from sklearn.utils import check_random_state

        return int(check_random_state(random_state).randint(0, MAX_SEED + 1, dtype=np.int64))
    return check_seed(random_state, "random_state")


def _text(v):
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return v if isinstance(v, str) else str(v)


class KDClassifier(ClassifierMixin, BaseEstimator):
    """Knowledge-distilled LSTM scorer for short answers, as a scikit-learn classifier.

    Parameters (stored as given; see :func:`tinykd.fit` for their meaning)
    ----------
    preset : {"7t", "falling_weights", "gelatin", "bathtub", "wide"}, default "7t"
    lam : float or None — λ of the soft term; None = 4 (``tinykd.train.options.DEFAULT_LAM``) with teacher
        probabilities, else 0.
    temperature : float, default 1.0
    epochs, batch_size, lr, patience : training settings.
    validation_fraction : float — stratified share held out for early stopping.
    config : dict or None — overrides of the preset's network config.
    offsets : bool or "plain", default True — per-class decision offsets chosen on the validation rows
        (:mod:`tinykd.train.offsets`), folded into the output layer's bias; "plain": only without ``teacher_proba``.
    random_state : int, None, ``numpy.random.RandomState`` or ``Generator``, default 0 — the seed of
        every random choice (init, shuffling, dropout, holdout; :func:`tinykd.fit` calls it ``seed``):
        an int is the seed; otherwise each ``fit`` draws one from it (None: NumPy's global generator).
    verbose : bool — print per-epoch progress to stderr.
    label_names : mapping ``{label: name}``, ``"0=incorrect,1=partly correct,2=correct"`` or None — the scores'
        names, stored in ``student_`` (:attr:`tinykd.Student.label_names`; None: each label itself).

    Attributes (after ``fit``)
    ----------
    classes_ : array of class labels (the order of ``predict_proba``'s columns).
    student_ : the fitted :class:`tinykd.Student` (``student_.save(path)`` writes a model file).
    n_params_ : parameter count.
    history_ : per-epoch training records.
    uses_context_ : whether ``X`` was (text, context) pairs.
    options_ : the :class:`~tinykd.train.options.TrainOptions` trained with (the seed drawn included).

    Ctrl-C during ``fit`` stops training and re-raises ``KeyboardInterrupt`` (so a
    ``cross_val_score`` stops too) and leaves the estimator unfitted.
    """

    def __init__(self, preset=_D.preset, lam=_D.lam, temperature=_D.temperature, epochs=_D.epochs,
                 batch_size=_D.batch_size, lr=_D.lr, patience=_D.patience,
                 validation_fraction=_D.validation_fraction, config=_D.config, offsets=_D.offsets,
                 random_state=_D.seed, verbose=False, label_names=None):
        self.preset = preset
        self.lam = lam
        self.temperature = temperature
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.config = config
        self.offsets = offsets
        self.random_state = random_state
        self.verbose = verbose
        self.label_names = label_names

    def fit(self, X, y, teacher_proba=None):
        """Train on texts ``X`` and labels ``y``; ``teacher_proba`` (n, K) are the teacher's
        probabilities with columns in sorted label order (``np.unique(y)``)."""
        for attr in ("student_", "classes_", "n_params_", "history_", "uses_context_", "options_"):
            self.__dict__.pop(attr, None)
        options = self._options()
        texts, contexts = _as_texts(X)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        if isinstance(self.label_names, (str, dict)):  # a misspelt label: an error before training
            label_names_for_data(self.label_names, y.tolist())
        student = _fit(texts, y, teacher_proba, options=options, contexts=contexts, verbose=self.verbose)
        if self.label_names is not None:
            student.label_names = self.label_names
        self.student_ = student
        self.classes_ = np.asarray(student.classes)
        self.n_params_ = student.n_params
        self.history_ = student.meta.get("history", [])
        self.uses_context_ = contexts is not None
        self.options_ = options
        return self

    def _options(self):
        """The :class:`~tinykd.train.options.TrainOptions` of the parameters (checked: a bad value is an
        :class:`~tinykd.errors.OptionError` naming the parameter)."""
        return TrainOptions(preset=self.preset, config=self.config, lam=self.lam, temperature=self.temperature,
                            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                            validation_fraction=self.validation_fraction, offsets=self.offsets,
                            seed=_seed(self.random_state))

    def _texts(self, X):
        check_is_fitted(self, "student_")
        texts, contexts = _as_texts(X)
        if self.uses_context_ and contexts is None:
            raise ValueError("this classifier was fitted on (text, context) pairs; pass an (n, 2) array")
        return texts, contexts

    def predict_proba(self, X):
        """Class probabilities (n, K) in the order of ``classes_``, calibrated (``student_.temperature``)."""
        texts, contexts = self._texts(X)
        return self.student_.predict_proba(texts, contexts).astype(np.float64)

    def predict(self, X):
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.non_deterministic = False
        return tags
