"""PostgreSQL connection strings (DSNs): parsing, checking, and printing them without the password.

Both of libpq's forms are accepted, parsed by libpq itself (``psycopg.conninfo.conninfo_to_dict``),
so we read a string exactly as the connection will:

* URL: ``postgresql://user:password@host:port/dbname?sslmode=require`` (or ``postgres://``);
* keywords: ``host=db port=5432 user=ingest password='a secret' dbname=ingest``.

libpq's own error messages quote parts of the string, the password included, so they never reach a
message: ``parse`` says what is wrong in its own words, next to the redacted string. ``redact`` and
``password_of`` work on anything, malformed strings included, with regular expressions only: when in
doubt they hide more, never less.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from ingest.errors import ConfigError

DEFAULT_PORT = 5432
SCHEMES = ("postgresql", "postgres")
MASK = "***"
_SECRET_KEYS = ("password", "sslpassword")  # sslpassword: the passphrase of the client's TLS key

_URL_START = re.compile(r"(\s*)([A-Za-z][A-Za-z0-9+.-]*)://")
# a keyword value as libpq reads it: quoted ('it\'s'; an unclosed quote runs to the end) or up to a space
_VALUE = r"(?:'(?:\\.|[^'\\])*(?:'|\\?\Z)|(?:\\.|[^\s\\])*\\?)"
_PAIR = re.compile(r"(?<![A-Za-z0-9_])((?:ssl)?password\s*=\s*)(" + _VALUE + ")", re.IGNORECASE | re.DOTALL)
_URL_SEPARATOR = re.compile(r"([?&])")
_PORT = re.compile(r"^((?:\[[^\]/?]*\]|[^:/?\[]*):)([^/?]*)")  # host (or [IPv6]) and port, up to / or ?
# a password= pair anywhere in a URL (a stray second ?, a missing ?, a space): its value runs to the next &
_URL_PAIR = re.compile(r"(?<![A-Za-z0-9_])((?:ssl)?password\s*=)([^&]*)", re.IGNORECASE | re.DOTALL)
# the keyword form token by token, as libpq splits it: key = value, or a word that is no pair
_TOKEN = re.compile(r"(?P<key>[^\s=]+\s*=\s*)(?P<value>" + _VALUE + r")|(?P<bare>\S+)", re.DOTALL)
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ConnInfo:
    """What a DSN connects to. ``host`` and ``port`` fall back to localhost:5432, ``dbname`` to the
    user's name (libpq's rule) or else postgres; ``params`` is libpq's whole reading of the string."""

    host: str
    port: int
    dbname: str
    user: str | None
    password: str | None = field(repr=False)
    params: Mapping[str, str] = field(repr=False, hash=False, default_factory=dict)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"{host}:{self.port}/{self.dbname}"


def parse(dsn: str, *, setting: str = "INGEST_DATABASE_URL") -> ConnInfo:
    """Read a DSN in either form; a ConfigError of one line (setting, redacted DSN, cause) if it is not one."""

    def refuse(cause: str) -> ConfigError:
        return ConfigError(f"{setting}: not a PostgreSQL connection string ({redact(dsn)}): {cause}")

    cause = _syntax_problem(dsn)
    if cause:
        raise refuse(cause)
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items()}
    except psycopg.Error as exc:
        raise refuse(_libpq_cause(str(exc), dsn)) from None
    except UnicodeDecodeError:
        raise refuse("a % escape decodes to bytes that are not UTF-8 text") from None
    cause = _value_problem(params, url=_URL_START.match(dsn) is not None)
    if cause:
        raise refuse(cause)
    user = params.get("user") or None
    return ConnInfo(
        # libpq would try its Unix socket first; messages (and asyncpg, over TCP) say localhost
        host=params.get("host") or params.get("hostaddr") or "localhost",
        port=int(params.get("port") or DEFAULT_PORT),
        # without a user libpq takes the OS user's name for both; only messages see this fallback
        dbname=params.get("dbname") or user or "postgres",
        user=user,
        password=params.get("password"),
        params=params,
    )


def where(dsn: str) -> str:
    """``host:port/dbname`` for a message; the redacted string when the DSN cannot be read. Never raises."""
    try:
        return parse(dsn).where
    except ConfigError:
        return redact(dsn)


def redact(dsn: str) -> str:
    """The DSN safe to print: every password (URL user info, ``?password=``, ``password=`` pairs) as ***.
    For any string, malformed included; never raises."""
    if not _URL_START.match(dsn):
        return _TOKEN.sub(_mask_token, dsn)
    head, rest = dsn.split("://", 1)
    userinfo = _userinfo(rest)
    if userinfo is not None:
        user, _, after = userinfo
        rest = f"{user}:{MASK}{after}"
    else:  # "postgresql://user:password" without "@host": libpq reads a host and a port that is no number
        rest = _PORT.sub(lambda m: m.group(1) + (m.group(2) if m.group(2).isdigit() else MASK), rest, count=1)
    # and every key=value whose key, decoded as libpq decodes it (pass%77ord), ends in password
    segments = _URL_SEPARATOR.split(_URL_PAIR.sub(_mask_pair, rest))
    masked = (f"{s.partition('=')[0]}={MASK}" if _url_key(s).endswith("password") else s for s in segments)
    return f"{head}://{''.join(masked)}"


def redact_pairs(text: str) -> str:
    """``password=value`` pairs (quoted or not) anywhere in a text as ``password=***``: a keyword DSN
    quoted in a library's message or a log line."""
    return _PAIR.sub(_mask_pair, text)


def password_of(dsn: str) -> str | None:
    """The password of a DSN as libpq reads it; for a malformed string, the text that looks like one,
    as written (what a library's message would echo). Never raises."""
    try:
        return parse(dsn).password
    except ConfigError:
        pass
    if _URL_START.match(dsn):
        rest = dsn.split("://", 1)[1]
        userinfo = _userinfo(rest)
        if userinfo is not None:
            return userinfo[1]
        values = (s.partition("=")[2] for s in _URL_SEPARATOR.split(rest) if _url_key(s) == "password")
        return next(values, None)
    tokens = (m for m in _TOKEN.finditer(dsn) if m.group("key") and _name(m.group("key")) == "password")
    found = next(tokens, None)
    return _unescape(found.group("value")) if found else None


def _name(key: str) -> str:
    """The keyword of a token's ``key =`` part, lower case: libpq's are, we match more widely."""
    return key.partition("=")[0].strip().lower()


def _userinfo(rest: str) -> tuple[str, str, str] | None:
    """(user, password, "@" and what follows) of a URL's text after ``scheme://``, when it has a password.

    libpq ends the user info at the first @ before the first /; the last one is taken here, and the
    last @ of all when none comes before a /: an unescaped @ or / may belong to the password."""
    slash = rest.find("/")
    at = rest.rfind("@", 0, slash if slash >= 0 else len(rest))
    if at < 0:
        at = rest.rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return None
    user, _, password = rest[:at].partition(":")
    return user, password, rest[at:]


def _mask_pair(m: re.Match[str]) -> str:
    return m.group(1) + MASK


def _mask_token(m: re.Match[str]) -> str:
    """One token of a keyword DSN, hidden when it is or may be (part of) a password."""
    glued = m.start() > 0 and not m.string[m.start() - 1].isspace()  # right after a closing quote
    name = _name(m.group("key") or "")
    if m.group("bare") or glued or not _KEYWORD.fullmatch(name):
        # no pair, or one libpq reads oddly: what an unbalanced quote or a misplaced password leaves
        return MASK
    if name.endswith("password"):
        return m.group("key") + MASK
    # "host= password=x": libpq takes the pair for host's value; hidden whole, whatever its quotes
    return m.group("key") + (MASK if _PAIR.search(m.group("value")) else m.group("value"))


def _url_key(segment: str) -> str:
    """The key of a URL's key=value segment as libpq reads it (decoded, lower case); "" if it has none."""
    key, eq, _ = segment.partition("=")
    return unquote(key).strip().lower() if eq else ""


def _unescape(value: str) -> str:
    """A keyword value as libpq reads it: quotes dropped, backslash escapes resolved."""
    if value.startswith("'"):
        value = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
    return re.sub(r"\\(.)", r"\1", value, flags=re.DOTALL)


def _syntax_problem(dsn: str) -> str | None:
    """What libpq would not tell us, or would tell us with the string quoted."""
    if not dsn.strip():
        return "it is empty"
    if "\0" in dsn:
        return "it contains a NUL character"
    url = _URL_START.match(dsn)
    if url is None:
        return None
    if url.group(2) not in SCHEMES:
        return "scheme must be postgresql:// or postgres://"
    if url.group(1):
        return "no spaces before postgresql://"
    return None


def _value_problem(params: Mapping[str, str], *, url: bool) -> str | None:
    """Values libpq accepts when parsing but a connection (or our single-host ConnInfo) cannot use."""
    for key, value in params.items():
        if key in _SECRET_KEYS:
            continue
        if not url and re.match(r"\w+\s*=", value):
            # "host= password=x": libpq skips the space and takes the next pair as host's value
            return f"{key}= has no value before the next pair (write {key}='' for an empty one)"
        if _PAIR.search(value):  # "/db&password=x": a ? missing, the password would show as the dbname
            return f"the {key} holds a password= pair (is a ? or & missing before it?)"
    hosts = params.get("host", "")
    escape = " (in a URL, write : / @ in the user name or password as %3A %2F %40)" if url else ""
    if "," in hosts or "," in params.get("port", ""):
        return "several hosts are not supported: name one host"
    if url and "@" in hosts:
        return f"the host contains an @{escape}"
    port = params.get("port", "")
    if port and not (re.fullmatch(r"[0-9]{1,5}", port) and 1 <= int(port) <= 65535):
        return f"the port must be a number from 1 to 65535{escape}"
    return None


# libpq's parse errors (fe-connect.c), by the start of the message, in our words (never its quotes)
_LIBPQ_CAUSES = (
    ("unterminated quoted string", "a quoted value has no closing '"),
    ("end of string reached when looking for matching", "a [ around the host address has no closing ]"),
    ("IPv6 host address may not be empty", "the host address between [ ] is empty"),
    ("unexpected character", "after the ] of an IPv6 host address only :port or /dbname may follow"),
    ("extra key/value separator", "each query parameter must be one key=value"),
    ("missing key/value separator", "each query parameter must be one key=value"),
    ("invalid percent-encoded token", "a % must start an escape of two hex digits (write a % itself as %25)"),
    ("forbidden value %00", "%00 (a NUL character) is not allowed"),
)


def _libpq_cause(message: str, dsn: str) -> str:
    message = message.strip()
    for start, cause in _LIBPQ_CAUSES:
        if message.startswith(start):
            return cause
    if message.startswith('missing "=" after'):
        return "expected a postgresql:// URL or keyword=value pairs (host=... dbname=...)"
    for start, what in (("invalid connection option", "keyword"), ("invalid URI query parameter", "query parameter")):
        if message.startswith(start):
            return f"unknown {what}{_quoted_name(message, dsn)}"
    return "libpq cannot read it"


def _quoted_name(message: str, dsn: str) -> str:
    """The option name libpq quotes, if it is a plain name that the redacted DSN shows anyway."""
    m = re.search(r'"([^"]*)"', message)
    name = m.group(1) if m else ""
    return f" {name!r}" if _KEYWORD.fullmatch(name) and name in redact(dsn) else ""
