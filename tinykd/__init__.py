"""tinykd — distil a fine-tuned BERT scorer of student answers into a tiny NumPy/Numba LSTM.

    import tinykd
    student = tinykd.fit(texts, labels, teacher_proba=p, preset="7t", lam=1.0)
    student.predict(["the acid rain dissolves marble"])
    student.save("scorer.npz"); tinykd.load("scorer.npz")

Importing tinykd loads NumPy and the layers' Numba kernels only; scikit-learn
is imported when training (vocabulary fit, splits, metrics), never to score.
"""
__version__ = "0.1.0"

from .io import ModelFileError, load, save  # noqa: E402
from .model import PRESETS, StudentNet, make_config  # noqa: E402
from .student import Student, fit, n_params  # noqa: E402


def __getattr__(name):  # the scikit-learn face is imported only when asked for
    if name == "KDClassifier":
        from .estimator import KDClassifier

        return KDClassifier
    raise AttributeError(f"module 'tinykd' has no attribute {name!r}")


__all__ = ["fit", "load", "save", "Student", "StudentNet", "PRESETS", "make_config", "n_params",
           "ModelFileError", "KDClassifier", "__version__"]
