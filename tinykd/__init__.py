"""tinykd — distil a fine-tuned BERT scorer of student answers into a tiny NumPy/Numba LSTM.

    import tinykd
    student = tinykd.fit(texts, labels, teacher_proba=p, preset="7t", lam=1.0)
    student = tinykd.fit(texts, labels, teacher_proba=p, options=tinykd.TrainOptions(preset="7t", lam=1.0))
    student.predict(["the acid rain dissolves marble"])
    student.save("scorer.npz"); tinykd.load("scorer.npz")
    model = tinykd.fit_items(texts, labels, items=items, ids=ids, teacher="soft.csv")  # what `tinykd train` does

Importing tinykd loads NumPy only (Numba starts with the first training step or the first
large scoring job); the training modules load on first use of ``fit`` / ``fit_items``, and
scikit-learn when training (vocabulary fit, splits, metrics), never to score.
"""
from tinykd._version import __version__
from tinykd.errors import OptionError
from tinykd.nn.network import PRESETS, StudentNet, make_config, n_params
from tinykd.scoring.modelfile import ModelFileError
from tinykd.scoring.scorer import Scorer
from tinykd.settings import Settings
from tinykd.scoring.student import Bundle, Student, UnknownItemError, load, save


def __getattr__(name):  # training and the scikit-learn face are imported only when asked for
    if name == "fit":
        from tinykd.train.fitting import fit

        return fit
    if name == "fit_items":
        from tinykd.train.items import fit_items

        return fit_items
    if name == "TrainOptions":
        from tinykd.train.options import TrainOptions

        return TrainOptions
    if name == "KDClassifier":
        from tinykd.estimator import KDClassifier

        return KDClassifier
    raise AttributeError(f"module 'tinykd' has no attribute {name!r}")


__all__ = ["fit", "fit_items", "TrainOptions", "load", "save", "Student", "Bundle", "Scorer", "Settings", "StudentNet",
           "PRESETS", "make_config", "n_params", "ModelFileError", "OptionError", "UnknownItemError",
           "KDClassifier", "__version__"]
