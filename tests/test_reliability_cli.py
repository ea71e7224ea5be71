"""Every error line the command line prints is bounded, whatever raised it (issue 32, defect 18's last line of defence)."""
import pytest

from tinykd.cli import commands


@pytest.mark.parametrize("exc", [ValueError, LookupError, RuntimeError])
def test_an_error_quoting_megabytes_is_one_short_line(monkeypatch, capsys, exc):
    def boom(args):
        raise exc("x" * 5_000_000)

    monkeypatch.setattr(commands, "cmd_info", boom)
    rc = commands.main(["info", "m.npz"])
    err = capsys.readouterr().err
    assert rc == (1 if exc is RuntimeError else 2)
    assert err.count("\n") == 1 and len(err) < commands.MAX_ERROR_CHARS + 200, len(err)
    assert "(5,000,000 characters)" in err
