from tinykd.cli.commands import main

__all__ = ["main"]
