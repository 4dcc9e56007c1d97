"""The local stack's pure parts: what a failed PostgreSQL start is reported as."""

from __future__ import annotations

from pathlib import Path

from ingest.stack import _log_cause


def test_a_failed_start_names_the_cause_from_the_server_log(tmp_path: Path) -> None:
    log = tmp_path / "postgres.log"
    log.write_text(
        "2026-12-01 10:00:00 UTC [1] LOG:  starting PostgreSQL 15\n"
        '2026-12-01 10:00:00 UTC [1] LOG:  could not bind IPv4 address "127.0.0.1": Address already in use\n'
        "2026-12-01 10:00:00 UTC [1] HINT:  Is another postmaster already running on port 15432?\n"
        "2026-12-01 10:00:00 UTC [1] FATAL:  could not create any TCP/IP sockets\n"
        "2026-12-01 10:00:00 UTC [1] LOG:  database system is shut down\n"
    )
    assert _log_cause(log) == "2026-12-01 10:00:00 UTC [1] FATAL:  could not create any TCP/IP sockets"
    log.write_text('FATAL:  invalid value for parameter "port": "x"\nHINT:  Use a number.\n')
    assert _log_cause(log) == 'FATAL:  invalid value for parameter "port": "x" HINT:  Use a number.'
    assert _log_cause(tmp_path / "none.log") == "no log written"
