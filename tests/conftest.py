"""Shared test helpers and fixtures.

Helpers are plain functions imported by the test modules (``from conftest import ...``);
``slow`` marks the long tests (``python -m pytest -m "not slow"`` skips them).
"""
import csv

import numpy as np
import pytest


def write_csv(path, rows, header=None):
    """Write dict rows to a UTF-8 CSV with a header; returns the path as a string."""
    header = header or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(rows)
    return str(path)


def numgrad(f, a, eps=1e-6):
    """Central differences of scalar f() with respect to array a (modified in place, then restored)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def run_cli(capsys, *args):
    """``tinykd`` with these arguments: (exit status, stdout, stderr)."""
    from tinykd.cli import main

    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_user_error(rc, err, *needles):
    """Exit status 2 and one line ``tinykd: error: …`` holding every needle."""
    assert rc == 2, err
    last = err.rstrip("\n").split("\n")[-1]  # progress notes may come first; the error is one line
    assert last.startswith("tinykd: error: ") and err.endswith(last + "\n"), err
    assert "Traceback" not in err
    for n in needles:
        assert n in last, (n, err)


@pytest.fixture
def rng():
    return np.random.default_rng(7)
