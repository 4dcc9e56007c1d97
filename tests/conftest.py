"""Shared fixtures: a real PostgreSQL+PostGIS+pgstac cluster and a real S3 server (SeaweedFS), started
once per test session by the project's own stack code, in a throw-away directory on free ports."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
# real Sentinel products and rasters, vendored with their provenance and licences (see its MANIFEST.md)
FIXTURES = ROOT / "tests" / "fixtures"
# the real SAFE products among them (metadata only, no imagery)
REAL_S2 = FIXTURES / "sentinel2" / "safe"
REAL_S2_L1C = REAL_S2 / "S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE"
REAL_S2_L2A_N0214 = REAL_S2 / "esa_S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.SAFE"
REAL_S2_L2A_N0400 = REAL_S2 / "S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE"
REAL_S1_GRD = (
    FIXTURES / "sentinel1" / "safe" / "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13_6FF8.SAFE"
)
# the real Sentinel-3 products: xfdumanifest.xml and upstream's header-only netCDF stubs
REAL_S3 = sorted((FIXTURES / "sentinel3" / "safe").glob("*.SEN3"))

# Settings must never come from a developer's own .stack/ or .env while testing.
for key in [k for k in os.environ if k.startswith("INGEST_")]:
    del os.environ[key]


class SkipsFail:
    """A skipped test fails the session: every test runs everywhere (nothing it needs may be absent).

    xfail is not a skip (its reports carry ``wasxfail``). There is deliberately no way to allow skips.
    """

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []

    def _note(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            longrepr = report.longrepr
            reason = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
            self.skipped.append((report.nodeid, reason.removeprefix("Skipped: ")))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._note(report)  # a whole module skipped while collecting

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._note(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skipped and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.skipped:
            terminalreporter.section("skipped tests fail the run", red=True, bold=True)
            for nodeid, reason in self.skipped:
                terminalreporter.line(f"SKIPPED (counted as a failure) {nodeid}: {reason}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipsFail(), "ingest-skips-fail")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_dir_for_postgres(prefix: str) -> Path:
    """A temp dir the 'postgres' OS user can traverse (pytest's tmp dirs are 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    return d


@dataclass
class Stack:
    root: Path
    pg_port: int
    s3_port: int
    # kept out of the repr: pytest prints a failing test's fixtures, and these carry the stack's passwords
    dsn: str = field(repr=False)
    env: dict[str, str] = field(repr=False)

    def database(self, name: str) -> str:
        return self.dsn.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    from ingest import stack as st

    root = make_dir_for_postgres("ingest-test-stack-")
    cfg = st.StackConfig(root=root, pg_port=free_port(), s3_port=free_port(), durable=False)
    try:
        st.up(cfg)
        env = st.read_env(cfg)
        yield Stack(root, cfg.pg_port, cfg.s3_port, env["INGEST_DATABASE_URL"], env)
    finally:
        st.down(cfg)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point settings at the test stack for code running in this process."""
    for k, v in stack.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("INGEST_STACK_DIR", str(stack.root))
    return {**stack.env, "INGEST_STACK_DIR": str(stack.root)}


@contextmanager
def _throwaway_database(stack: Stack, template: str | None = None) -> Iterator[str]:
    """A brand-new database in the test cluster (a copy of ``template`` if given), dropped afterwards."""
    name = "t_" + secrets.token_hex(6)
    admin = stack.database("postgres")
    copy = f" TEMPLATE {template}" if template else ""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}{copy}")
    try:
        yield stack.database(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_db(stack: Stack) -> Iterator[str]:
    """A brand-new, empty database in the test cluster; dropped afterwards."""
    with _throwaway_database(stack) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def migrated_template(stack: Stack) -> str:
    """A database with pgstac, the ingest schema and the queue's tables, copied by ``migrated_db``."""
    from ingest import stack as st

    name = "tmpl_" + secrets.token_hex(4)
    with psycopg.connect(stack.database("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    st.migrate_database(stack.database(name))
    return name


@pytest.fixture
def migrated_db(stack: Stack, migrated_template: str) -> Iterator[str]:
    """A brand-new database with everything migrated (a copy of the session's template); dropped afterwards."""
    with _throwaway_database(stack, migrated_template) as dsn:
        yield dsn


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `ingest ...` as a separate OS process, as an operator would."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
