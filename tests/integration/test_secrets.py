"""No command prints a database password: ``ingest`` as real OS processes, with DSNs in both libpq
forms, malformed, unreachable or refused, in INGEST_DATABASE_URL and INGEST_API_DATABASE_URL. Each
failure is one line on stderr and a non-zero exit, never a traceback; the keyword form works end to end."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from ingest import dsn
from tests.conftest import ROOT, Stack, free_port, run_cli

PW = "S3cr3t-Pw-7731"
DEAD = free_port()  # nothing listens there: connections are refused at once

ESCAPED = quote(PW + "@/: ", safe="")  # a password with URL delimiters in it, escaped as it must be

# a DSN of each form to a given port of 127.0.0.1, carrying PW
FORMS: dict[str, Callable[[int], str]] = {
    "url": lambda port: f"postgresql://ingest_admin:{PW}@127.0.0.1:{port}/ingest",
    "url, escaped password": lambda port: f"postgresql://ingest_admin:{ESCAPED}@127.0.0.1:{port}/ingest",
    "url, ?password=": lambda port: f"postgres://ingest_admin@127.0.0.1:{port}/ingest?password={PW}&sslmode=disable",
    "keywords": lambda port: f"host=127.0.0.1 port={port} user=ingest_admin password={PW} dbname=ingest",
    "keywords, quoted": lambda port: (
        f"host=127.0.0.1 port={port} user=ingest_admin password = '{PW} x\\'y' dbname=ingest"
    ),
}

MALFORMED = {
    "unbalanced [": (f"postgresql://u:{PW}@[bad/db", "no closing ]"),
    "port not a number": (f"postgresql://u:{PW}@h:abc/db", "the port must be a number"),
    "bad % escape": (f"postgresql://u:p%zz{PW}@h/db", "a % must start an escape"),
    "unknown scheme": (f"mysql://u:{PW}@h/db", "scheme must be postgresql:// or postgres://"),
    "keyword port not a number": (f"host=h port=abc user=u password={PW} dbname=d", "the port must be a number"),
    "unclosed quote": (f"host=h user=u password='{PW} dbname=d", "a quoted value has no closing '"),
    "unknown keyword": (f"host=h fsync=off user=u password={PW}", "unknown keyword 'fsync'"),
    "password without =": (f"host=h user=u password {PW}", "keyword=value pairs"),
}

SETTINGS = ("INGEST_DATABASE_URL", "INGEST_API_DATABASE_URL")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No developer's .env or .stack/ (the commands run in tmp_path), the repository's collections."""
    return {"INGEST_STACK_DIR": str(tmp_path / "no-stack"), "INGEST_COLLECTIONS_DIR": str(ROOT / "collections")}


def commands() -> dict[str, list[str]]:
    return {
        "status": ["status"],
        "collections sync": ["collections", "sync"],
        "healthcheck": ["healthcheck", "--check", "database", "--check", "scheduler", "--timeout", "3"],
        "db create-reader": ["db", "create-reader"],
        "serve": ["serve", "--port", str(free_port())],
    }


def run_all(runs: dict[str, list[str]], env: dict[str, str], cwd: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """The commands at once, each its own process (they are independent; one after the other is slow)."""
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = {name: pool.submit(run_cli, *args, env=env, cwd=cwd, timeout=90) for name, args in runs.items()}
        return {name: f.result() for name, f in futures.items()}


def one_clean_line(name: str, out: subprocess.CompletedProcess[str]) -> str:
    """The failure's only stderr line, after checking that nothing shows the password or a traceback."""
    text = out.stdout + out.stderr
    assert PW not in text, f"{name} printed the password:\n{text}"
    assert "Traceback" not in text, f"{name} printed a traceback:\n{text}"
    assert out.returncode != 0, f"{name} exited 0:\n{text}"
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{name} wrote {len(lines)} lines to stderr:\n{out.stderr}"
    return lines[0]


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_malformed_dsn_stops_every_command_with_one_line(setting: str, env: dict[str, str], tmp_path: Path) -> None:
    """Every malformed form through one command, and one malformed form through every command: the
    validation is the settings' own, shared by all commands (a full matrix would be 80 processes)."""
    good = FORMS["url"](DEAD)  # the other setting is fine: the line is about this one

    def env_with(bad: str) -> dict[str, str]:
        return env | {s: bad if s == setting else good for s in SETTINGS}

    one = "unknown keyword"
    runs = [(f"{case}: status", ["status"], env_with(bad), cause) for case, (bad, cause) in MALFORMED.items()]
    bad, cause = MALFORMED[one]
    runs += [(f"{one}: {name}", args, env_with(bad), cause) for name, args in commands().items()]
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        futures = [(n, c, pool.submit(run_cli, *args, env=e, cwd=tmp_path, timeout=90)) for n, args, e, c in runs]
        outs = [(n, c, f.result()) for n, c, f in futures]
    assert len(outs) == len(MALFORMED) + len(commands())
    for name, cause, out in outs:
        line = one_clean_line(name, out)
        assert out.returncode == 78, f"{name}: {out.returncode} {line}"
        assert line.startswith(f"error: invalid settings: {setting}: not a PostgreSQL connection string ("), line
        assert cause in line, f"{name}: {line}"


@pytest.mark.parametrize("form", list(FORMS))
def test_an_unreachable_database_is_one_line_in_every_form(form: str, env: dict[str, str], tmp_path: Path) -> None:
    env |= {"INGEST_DATABASE_URL": FORMS[form](DEAD), "INGEST_API_DATABASE_URL": FORMS["keywords"](DEAD)}
    runs = {k: v for k, v in commands().items() if k != "serve"}  # serve uses the API's DSN alone
    for name, out in run_all(runs, env, tmp_path).items():
        line = one_clean_line(name, out)
        assert f"127.0.0.1:{DEAD}/ingest" in line and "refused" in line, f"{name}: {line}"
        assert line.startswith("unhealthy: " if name == "healthcheck" else "error: "), f"{name}: {line}"


@pytest.mark.parametrize("form", ["url", "keywords", "keywords, quoted"])
def test_a_wrong_password_is_one_line_without_it(form: str, stack: Stack, env: dict[str, str], tmp_path: Path) -> None:
    # the real server refuses: its message names the user, and ours the place, never the password
    wrong = FORMS[form](stack.pg_port)
    api = wrong.replace("ingest_admin", "ingest_api")
    env |= {"INGEST_DATABASE_URL": wrong, "INGEST_API_DATABASE_URL": api}
    runs = {k: v for k, v in commands().items() if k != "db create-reader"}  # it would set the API's password
    for name, out in run_all(runs, env, tmp_path).items():
        line = one_clean_line(name, out)
        assert f"127.0.0.1:{stack.pg_port}/ingest" in line and "password authentication failed" in line, line


@pytest.fixture
def api_role(stack: Stack) -> Iterator[str]:
    """A role name of the test's own: create-reader makes the role before it tries the API's DSN."""
    role = "secrets_" + secrets.token_hex(4)
    yield role
    with psycopg.connect(stack.database("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.parametrize("form", list(FORMS))
def test_an_unreachable_api_database_is_one_line_in_every_form(
    form: str, migrated_db: str, api_role: str, env: dict[str, str], tmp_path: Path
) -> None:
    env |= {
        "INGEST_DATABASE_URL": migrated_db,
        "INGEST_API_DATABASE_URL": FORMS[form](DEAD).replace("ingest_admin", api_role),
    }
    runs = {k: v for k, v in commands().items() if k in ("serve", "db create-reader")}
    for name, out in run_all(runs, env, tmp_path).items():
        line = one_clean_line(name, out)
        assert out.returncode == 69 and line.startswith("error: database "), f"{name}: {line}"
        assert f"127.0.0.1:{DEAD}/ingest" in line and "refused" in line, f"{name}: {line}"


def test_keyword_dsns_work_end_to_end(migrated_db: str, api_role: str, env: dict[str, str], tmp_path: Path) -> None:
    info = dsn.parse(migrated_db)  # the test stack's URL, in the other form
    keywords = make_conninfo(host=info.host, port=info.port, user=info.user, password=info.password, dbname=info.dbname)
    reader = make_conninfo(keywords, user=api_role, password=PW + " 'quoted'")
    assert keywords.startswith("host=") and "://" not in keywords
    env |= {"INGEST_DATABASE_URL": keywords, "INGEST_API_DATABASE_URL": reader}
    runs = {
        "status": ["status"],
        "healthcheck": ["healthcheck", "--check", "database"],
        "db create-reader": ["db", "create-reader"],
    }
    outs = run_all(runs, env, tmp_path)
    for name, out in outs.items():
        text = out.stdout + out.stderr
        assert out.returncode == 0, f"{name}:\n{text}"
        assert PW not in text and str(info.password) not in text, f"{name}:\n{text}"
    assert "sentinel-2-l2a: no products" in outs["status"].stdout and "queue: empty" in outs["status"].stdout
    assert f"{info.host}:{info.port}/{info.dbname} answers" in outs["healthcheck"].stdout
    assert f"read-only API role {api_role}" in outs["db create-reader"].stdout
