"""The error every face of tinykd shows for a bad option value."""
from __future__ import annotations

import numbers


class OptionError(ValueError):
    """A bad option value. The message names the option: as the Python parameter
    (``str(e)``: "lr must be > 0") or as the command-line flag (:meth:`for_cli`:
    "--lr must be > 0")."""

    def __init__(self, option, template):
        self.option = option
        self.template = template
        super().__init__(template.replace("{opt}", option))

    def for_cli(self):
        return self.template.replace("{opt}", "--" + self.option.replace("_", "-"))


#: the seeds NumPy and scikit-learn take
MAX_SEED = 2**32 - 1


def check_seed(seed, option="seed"):
    """A seed must be a whole number in 0 … 2³² − 1 (what NumPy and scikit-learn take)."""
    if isinstance(seed, bool) or not hasattr(seed, "__index__") or not 0 <= int(seed) <= MAX_SEED:
        raise OptionError(option, f"{{opt}} must be a whole number from 0 to {MAX_SEED:,}, got {seed!r}")
    return int(seed)


def check_average(average, option="average"):
    """Polyak averaging's horizon: None (off) or a number of epochs > 0."""
    if average is not None and (isinstance(average, bool) or not isinstance(average, numbers.Real)
                                or not 0 < average < float("inf")):
        raise OptionError(option, f"{{opt}} must be None or a number of epochs > 0, got {average!r}")
    return average
