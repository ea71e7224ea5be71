"""The error every face of tinykd shows for a bad option value."""
from __future__ import annotations


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
