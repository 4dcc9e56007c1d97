"""The local development stack, without Docker: a PostgreSQL+PostGIS cluster in a data directory
of the project's, pgstac and the ingest schema migrated into it, and moto's S3 server.

Everything lives under ``stack_dir`` (default ``.stack/``): the cluster, logs, the moto PID file and
``stack.env``, the connection settings (with a password generated on first start) that
``ingest.settings`` reads. ``up`` is idempotent; ``down`` stops exactly the processes ``up`` started,
by the PIDs it recorded (postmaster.pid for PostgreSQL, moto.pid for the S3 server).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.dsn import password_of
from ingest.errors import StackError

log = logging.getLogger(__name__)

PG_SUPERUSER = "ingest_admin"
API_ROLE = "ingest_api"  # the STAC API's read-only login role (ingest.reader)
PG_DATABASE = "ingest"
DEBIAN_PACKAGES = ("postgresql", "postgresql-15-postgis-3")


@dataclass(frozen=True)
class StackConfig:
    root: Path
    pg_port: int = 55432
    s3_port: int = 55900
    bucket: str = "eo-catalogue"
    region: str = "us-east-1"
    durable: bool = True  # False: fsync off, for throw-away test clusters
    # the API role's own settings (INGEST_API_STATEMENT_TIMEOUT_S, INGEST_API_IDLE_IN_TRANSACTION_TIMEOUT_S)
    api_statement_timeout_s: float = 15.0
    api_idle_in_transaction_timeout_s: float = 15.0

    @property
    def pg_dir(self) -> Path:
        return self.root / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_log(self) -> Path:
        return self.pg_dir / "postgres.log"

    @property
    def s3_dir(self) -> Path:
        return self.root / "s3"

    @property
    def moto_pid_file(self) -> Path:
        return self.s3_dir / "moto.pid"

    @property
    def env_file(self) -> Path:
        return self.root / "stack.env"


# ----------------------------------------------------------------------------- helpers


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not open port {port} within {timeout:.0f}s")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _as_root() -> bool:
    return os.geteuid() == 0


def _run(cmd: list[str], *, what: str, user: str | None = None, env: dict[str, str] | None = None) -> str:
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise StackError(f"{what} failed (exit {proc.returncode}): {' / '.join(tail)}")
    return proc.stdout


# ----------------------------------------------------------------------------- PostgreSQL


def find_pg_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return candidates[-1].parent if candidates else None


def _postgis_installed(bindir: Path) -> bool:
    version = bindir.parent.name
    return Path(f"/usr/share/postgresql/{version}/extension/postgis.control").exists()


def ensure_postgres_packages() -> Path:
    """Return the PostgreSQL bin dir, installing the Debian packages first if missing (as root)."""
    bindir = find_pg_bindir()
    if bindir is not None and _postgis_installed(bindir):
        return bindir
    if not (_as_root() and shutil.which("apt-get")):
        raise StackError(
            f"PostgreSQL with PostGIS is not installed; as root run: apt-get install -y {' '.join(DEBIAN_PACKAGES)}"
        )
    log.info("installing %s with apt-get", " ".join(DEBIAN_PACKAGES))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], what="apt-get update", env=env)
    _run(["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES], what="apt-get install", env=env)
    bindir = find_pg_bindir()
    if bindir is None or not _postgis_installed(bindir):
        raise StackError("PostgreSQL/PostGIS still missing after apt-get install")
    return bindir


def _pg_user() -> str | None:
    """initdb and postgres refuse to run as root: as root we run them as the 'postgres' user."""
    return "postgres" if _as_root() else None


def _check_traversable(path: Path, user: str) -> None:
    probe = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)], capture_output=True)
    if probe.returncode != 0:
        raise StackError(
            f"the '{user}' user cannot reach {path}; PostgreSQL must run as '{user}' when started by root: "
            "choose a stack_dir it can traverse (INGEST_STACK_DIR)"
        )


def _pg_pid(cfg: StackConfig) -> int | None:
    pidfile = cfg.pg_data / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid) else None


def _initdb(cfg: StackConfig, bindir: Path, password: str) -> None:
    user = _pg_user()
    cfg.pg_dir.mkdir(parents=True, exist_ok=True)
    pwfile = cfg.pg_dir / ".pwfile"
    pwfile.write_text(password + "\n")
    os.chmod(pwfile, 0o600)
    if user:
        shutil.chown(cfg.pg_dir, user, user)
        shutil.chown(pwfile, user, user)
        _check_traversable(cfg.pg_dir, user)
    try:
        _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(cfg.pg_data),
                "-U",
                PG_SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            what="initdb",
            user=user,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    conf = [
        f"port = {cfg.pg_port}",
        "listen_addresses = '127.0.0.1'",
        "unix_socket_directories = ''",  # TCP only: socket paths under a deep checkout can exceed 107 bytes
        "max_connections = 200",
        "shared_buffers = 256MB",
        "work_mem = 16MB",
        "maintenance_work_mem = 256MB",
    ]
    if not cfg.durable:
        conf += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
    with open(cfg.pg_data / "postgresql.auto.conf", "a") as f:
        f.write("\n".join(conf) + "\n")


def _start_postgres(cfg: StackConfig, bindir: Path) -> None:
    if _pg_pid(cfg) is not None:
        return
    if _port_open(cfg.pg_port):
        raise StackError(f"port {cfg.pg_port} is taken by another process; set INGEST_STACK_PG_PORT")
    _run(
        [str(bindir / "pg_ctl"), "-D", str(cfg.pg_data), "-l", str(cfg.pg_log), "-w", "-t", "60", "start"],
        what="pg_ctl start",
        user=_pg_user(),
    )
    _wait_port(cfg.pg_port, 30, "PostgreSQL")


def _stop_postgres(cfg: StackConfig) -> bool:
    if _pg_pid(cfg) is None:
        return False
    bindir = find_pg_bindir()
    if bindir is None:
        raise StackError("PostgreSQL binaries are gone; cannot stop the cluster cleanly")
    _run(
        [str(bindir / "pg_ctl"), "-D", str(cfg.pg_data), "-m", "fast", "-w", "stop"],
        what="pg_ctl stop",
        user=_pg_user(),
    )
    return True


def admin_dsn(cfg: StackConfig, password: str, database: str = PG_DATABASE) -> str:
    return f"postgresql://{PG_SUPERUSER}:{password}@127.0.0.1:{cfg.pg_port}/{database}"


def api_dsn(cfg: StackConfig, password: str, database: str = PG_DATABASE) -> str:
    return f"postgresql://{API_ROLE}:{password}@127.0.0.1:{cfg.pg_port}/{database}"


def _ensure_database(cfg: StackConfig, password: str) -> None:
    import psycopg

    with psycopg.connect(admin_dsn(cfg, password, "postgres"), autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")


def migrate_database(dsn: str) -> str:
    """pypgstac migrate (needs a superuser: it creates extensions and roles), the harvest queryables,
    alembic head, then the work queue's tables (procrastinate)."""
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    from ingest.adapters.pgstac import ensure_queryables
    from ingest.adapters.queue import ensure_schema
    from ingest.state import migrations

    with PgstacDB(dsn=dsn) as db:
        version = Migrate(db).run_migration()
    ensure_queryables(dsn)  # `created`/`updated` as times: the harvesters' CQL2 filter and sort
    migrations.upgrade(dsn)
    ensure_schema(dsn)
    return str(version)


# ----------------------------------------------------------------------------- S3 (moto)


def _moto_pid(cfg: StackConfig) -> int | None:
    try:
        pid = int(cfg.moto_pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    # the PID must still be *our* moto server, not a recycled PID of something else
    if _pid_alive(pid) and "moto.server" in _cmdline(pid) and str(cfg.s3_port) in _cmdline(pid):
        return pid
    return None


def _start_moto(cfg: StackConfig) -> None:
    if _moto_pid(cfg) is not None:
        return
    if _port_open(cfg.s3_port):
        raise StackError(f"port {cfg.s3_port} is taken by another process; set INGEST_STACK_S3_PORT")
    cfg.s3_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.s3_dir / "moto.log", "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(cfg.s3_port)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    cfg.moto_pid_file.write_text(f"{proc.pid}\n")
    try:
        _wait_port(cfg.s3_port, 30, "moto S3 server")
    except StackError:
        proc.kill()
        cfg.moto_pid_file.unlink(missing_ok=True)
        raise


def _stop_moto(cfg: StackConfig) -> bool:
    pid = _moto_pid(cfg)
    cfg.moto_pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap if it is our child (tests start it in-process)
        time.sleep(0.05)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def _ensure_bucket(cfg: StackConfig, key_id: str, secret: str) -> None:
    from pydantic import SecretStr

    from ingest.adapters.s3 import ObjectStore

    ObjectStore(
        bucket=cfg.bucket,
        endpoint_url=f"http://127.0.0.1:{cfg.s3_port}",
        region=cfg.region,
        access_key_id=SecretStr(key_id),
        secret_access_key=SecretStr(secret),
    ).ensure_bucket()


# ----------------------------------------------------------------------------- stack.env


def read_env(cfg: StackConfig) -> dict[str, str]:
    """The settings ``stack.env`` holds (INGEST_*), empty before the first ``up``."""
    values: dict[str, str] = {}
    if cfg.env_file.exists():
        for line in cfg.env_file.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                values[k.strip()] = v.strip()
    return values


def _write_env(cfg: StackConfig, values: dict[str, str]) -> None:
    cfg.root.mkdir(parents=True, exist_ok=True)
    body = "# written by `ingest stack up`; holds generated local credentials: never commit\n"
    body += "".join(f"{k}={v}\n" for k, v in sorted(values.items()))
    tmp = cfg.env_file.with_suffix(".tmp")
    tmp.write_text(body)
    os.chmod(tmp, 0o600)
    tmp.replace(cfg.env_file)


def _stack_secrets(cfg: StackConfig) -> tuple[str, str, str]:
    """The cluster password and S3 keys: generated once, then read back from stack.env."""
    env = read_env(cfg)
    password = password_of(env.get("INGEST_DATABASE_URL", "")) or secrets.token_urlsafe(24)
    key_id = env.get("INGEST_S3_ACCESS_KEY_ID") or "local" + secrets.token_hex(6)
    secret = env.get("INGEST_S3_SECRET_ACCESS_KEY") or secrets.token_urlsafe(24)
    return password, key_id, secret


def _api_password(cfg: StackConfig) -> str:
    """The API role's password: generated once, then read back from stack.env."""
    return password_of(read_env(cfg).get("INGEST_API_DATABASE_URL", "")) or secrets.token_urlsafe(24)


# ----------------------------------------------------------------------------- public API


@dataclass
class StackStatus:
    postgres_pid: int | None
    postgres_port: int
    s3_pid: int | None
    s3_port: int
    env_file: Path

    @property
    def running(self) -> bool:
        return self.postgres_pid is not None and self.s3_pid is not None

    def as_dict(self) -> dict[str, object]:
        return {
            "postgres": {
                "running": self.postgres_pid is not None,
                "pid": self.postgres_pid,
                "port": self.postgres_port,
            },
            "s3": {"running": self.s3_pid is not None, "pid": self.s3_pid, "port": self.s3_port},
            "env_file": str(self.env_file),
        }


def up(cfg: StackConfig, *, migrate: bool = True) -> StackStatus:
    cfg = StackConfig(**{**cfg.__dict__, "root": cfg.root.resolve()})
    cfg.root.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.root, 0o755)  # noqa: S103 - the postgres user must traverse it when we run as root
    bindir = ensure_postgres_packages()
    password, key_id, secret = _stack_secrets(cfg)
    if not (cfg.pg_data / "PG_VERSION").exists():
        log.info("creating PostgreSQL cluster in %s", cfg.pg_data)
        _initdb(cfg, bindir, password)
    _start_postgres(cfg, bindir)
    log.info("PostgreSQL on 127.0.0.1:%d", cfg.pg_port)
    _ensure_database(cfg, password)
    dsn = admin_dsn(cfg, password)
    reader_dsn = api_dsn(cfg, _api_password(cfg))
    _write_env(
        cfg,
        {
            "INGEST_DATABASE_URL": dsn,
            "INGEST_API_DATABASE_URL": reader_dsn,
            "INGEST_S3_ENDPOINT_URL": f"http://127.0.0.1:{cfg.s3_port}",
            "INGEST_S3_ACCESS_KEY_ID": key_id,
            "INGEST_S3_SECRET_ACCESS_KEY": secret,
            "INGEST_S3_BUCKET": cfg.bucket,
            "INGEST_S3_REGION": cfg.region,
        },
    )
    if migrate:
        version = migrate_database(dsn)
        log.info("pgstac %s and ingest schema migrated", version)
        from ingest.reader import ensure_reader

        role = ensure_reader(
            dsn,
            reader_dsn,
            statement_timeout_s=cfg.api_statement_timeout_s,
            idle_in_transaction_timeout_s=cfg.api_idle_in_transaction_timeout_s,
        )
        log.info("read-only API role %s ready", role)
    _start_moto(cfg)
    _ensure_bucket(cfg, key_id, secret)
    log.info("S3 (moto) on 127.0.0.1:%d, bucket %s", cfg.s3_port, cfg.bucket)
    return status(cfg)


def down(cfg: StackConfig, *, purge: bool = False) -> dict[str, bool]:
    stopped = {"postgres": _stop_postgres(cfg), "s3": _stop_moto(cfg)}
    if purge and cfg.root.exists():
        shutil.rmtree(cfg.root)
    return stopped


def status(cfg: StackConfig) -> StackStatus:
    return StackStatus(_pg_pid(cfg), cfg.pg_port, _moto_pid(cfg), cfg.s3_port, cfg.env_file)
