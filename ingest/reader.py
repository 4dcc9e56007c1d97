"""The STAC API's own database role: a login role that can read the catalogue and nothing else.

``ingest serve`` connects only as this role (``INGEST_API_DATABASE_URL``), never as the migration
superuser: a bug or an injection in the API then cannot change the catalogue, because the database
refuses. The role is a member of pgstac's ``pgstac_read`` and of nothing else. ``pgstac_read`` may
SELECT pgstac's tables and write only pgstac's own search caches (``searches``, ``search_wheres``,
``format_item_cache``), which every search updates; items and collections stay out of reach.

The password is sent to the server as a SCRAM-SHA-256 verifier computed here, never in clear text,
so it cannot end up in the server's statement log (``log_statement = 'ddl'``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ingest.dsn import parse
from ingest.errors import ConfigError
from ingest.state.db import connect

READ_ROLE = "pgstac_read"
API_SETTING = "INGEST_API_DATABASE_URL"
SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


@dataclass(frozen=True)
class ServingRole:
    """What the server found about the role a DSN logs in as."""

    name: str
    superuser: bool
    can_write_items: bool
    pgstac_installed: bool
    reads_pgstac: bool
    pgstac_version: str | None


def role_of(dsn: str) -> tuple[str, str]:
    """(user, password) of a DSN in either libpq form; a ConfigError names what is missing, never the password."""
    info = parse(dsn, setting=API_SETTING)
    if not info.user or info.password is None:
        raise ConfigError(
            f"{API_SETTING} must name the API's role and its password "
            "(postgresql://user:pw@... or user=... password=...)"
        )
    return info.user, info.password


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores for a password (RFC 5802/7677, as libpq's
    PQencryptPasswordConn builds it). Only for ASCII passwords: PostgreSQL SASLprep-normalises the
    others, which we do not reproduce."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _password_literal(password: str) -> sql.Composable:
    if password.isascii():
        return sql.Literal(scram_verifier(password))
    return sql.Literal(password)  # the server hashes it; SASLprep must be the server's own


def ensure_reader(
    admin_dsn: str,
    api_dsn: str,
    *,
    statement_timeout_s: float = 15.0,
    idle_in_transaction_timeout_s: float = 15.0,
) -> str:
    """Create the API's login role from ``api_dsn`` (or reset its password and attributes), member of
    pgstac_read. Run as the migration role, after pgstac is migrated. Returns the role name.

    The timeouts become the role's own settings: every session of the public API's role has bounded
    work, whatever its client sets up (INGEST_API_STATEMENT_TIMEOUT_S, ..._IDLE_IN_TRANSACTION_TIMEOUT_S).

    Refuses a name that is a superuser or can write items (the admin DSN pasted by mistake, or a role
    made for something else): demoting it here would break whatever uses it."""
    user, password = role_of(api_dsn)
    with connect(dsn=admin_dsn) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [READ_ROLE]).fetchone() is None:
            raise ConfigError(f"role {READ_ROLE} does not exist: migrate pgstac first (ingest db migrate)")
        existing = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [user]).fetchone()
        if existing is not None and existing[0]:
            raise ConfigError(f"role {user} is a superuser: INGEST_API_DATABASE_URL must name a role of its own")
        with conn.transaction():
            verb = "ALTER" if existing else "CREATE"
            conn.execute(
                sql.SQL(
                    "{} ROLE {} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
                ).format(sql.SQL(verb), sql.Identifier(user), _password_literal(password))
            )
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(READ_ROLE), sql.Identifier(user)))
            # role settings are not inherited from pgstac_read; pgstac's functions use unqualified names
            conn.execute(sql.SQL("ALTER ROLE {} SET search_path = pgstac, public").format(sql.Identifier(user)))
            for name, seconds in (
                ("statement_timeout", statement_timeout_s),
                ("idle_in_transaction_session_timeout", idle_in_transaction_timeout_s),
            ):
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        sql.Identifier(user), sql.Identifier(name), sql.Literal(_milliseconds(seconds))
                    )
                )
    check_serving_role(inspect_role(api_dsn))
    return user


def _milliseconds(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"  # 0 would mean no limit at all


def inspect_role(dsn: str, *, timeout_s: int = 5) -> ServingRole:
    """Log in with ``dsn`` and ask the server who we are and what we may do."""
    # CASE, not AND: SQL does not promise to short-circuit, and the privilege functions raise on a
    # table or role that does not exist (pgstac not migrated yet)
    query = """
        SELECT r.rolname, r.rolsuper, to_regclass('pgstac.items') IS NOT NULL,
               CASE WHEN to_regclass('pgstac.items') IS NULL THEN false
                    ELSE has_table_privilege('pgstac.items', 'INSERT')
                         OR has_table_privilege('pgstac.items', 'UPDATE')
                         OR has_table_privilege('pgstac.items', 'DELETE') END,
               CASE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %(read)s) THEN false
                    ELSE pg_has_role(%(read)s, 'USAGE') END
        FROM pg_roles r WHERE r.rolname = current_user
    """
    with connect(dsn=dsn, timeout_s=timeout_s, setting=API_SETTING) as conn:
        row = conn.execute(query, {"read": READ_ROLE}).fetchone()
        assert row is not None  # current_user always has a pg_roles row
        name, superuser, installed, can_write, reads = row
        version = _pgstac_version(conn) if installed and reads else None
        return ServingRole(name, superuser, can_write, installed, reads, version)


def _pgstac_version(conn: psycopg.Connection) -> str | None:
    found = conn.execute("SELECT to_regprocedure('pgstac.get_version()') IS NOT NULL").fetchone()
    if not (found and found[0]):
        return None
    row = conn.execute("SELECT pgstac.get_version()").fetchone()
    return str(row[0]) if row else None


def check_serving_role(role: ServingRole) -> None:
    """Raise a one-line ConfigError unless the role is fit to serve the public: read-only, able to read."""
    fix = "set INGEST_API_DATABASE_URL to the read-only role `ingest db create-reader` makes"
    if role.superuser:
        raise ConfigError(f"refusing to serve as {role.name}: it is a superuser (rolsuper), the API must not be; {fix}")
    if role.can_write_items:
        raise ConfigError(f"refusing to serve as {role.name}: it can write pgstac.items; {fix}")
    if not role.pgstac_installed:
        raise ConfigError("pgstac is not installed in the API's database: run `ingest db migrate` first")
    if not role.reads_pgstac:
        raise ConfigError(f"role {role.name} is not a member of {READ_ROLE}: run `ingest db create-reader`")
