"""``ingest reconcile``'s command line: a wrong one is exit 2 with the option named, before any service
is reached (the command itself runs in tests/integration/test_reconcile.py)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ingest.cli import cli


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--start", "2026-03-02", "--end", "2026-03-01"], "--end (2026-03-01T00:00:00Z) must be after --start"),
        (["--start", "yesterday", "--end", "2026-03-01"], "--start: not a date or date-time"),
        (["--start", "2026-03-01", "--end", "2026-03-02", "--bbox", "1,2,3"], "--bbox: expected W,S,E,N"),
        (["--start", "2026-03-01", "--end", "2026-03-02", "--force"], "--force only changes what --repair retires"),
        (["--start", "2026-03-01"], "Missing option '--end'"),
    ],
)
def test_a_wrong_command_line_exits_2_naming_the_option(args: list[str], said: str) -> None:
    done = CliRunner().invoke(cli, ["reconcile", "sentinel-2-l1c", *args])
    assert done.exit_code == 2, done.output
    assert said in done.output


def test_the_help_says_what_the_exit_codes_mean() -> None:
    done = CliRunner().invoke(cli, ["reconcile", "--help"])
    text = " ".join(done.output.split())
    assert done.exit_code == 0
    assert "Exit 0 when nothing differs" in text and "1 when differences remain" in text
