"""teacher_export — fine-tune a BERT-family teacher offline and export its soft labels.

Optional extra (``pip install .[teacher]``): torch + transformers. The run-time
package ``tinykd`` never imports this package, torch or transformers.

    python -m teacher_export fit --data answers.csv --text-col text --label-col label --out runs/t
    python -m teacher_export export --teacher runs/t/teacher --data more.csv --out runs/t

The soft-label file format is documented in :mod:`tinykd.files.softlabels`.
"""
__all__ = ["__version__"]
__version__ = "0.2.0"  # 0.2.0: fused AdamW (tinykd distill's teacher stage keys on this)
