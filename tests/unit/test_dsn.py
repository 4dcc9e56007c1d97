"""DSNs in both libpq forms, well-formed or not: what ``ingest.dsn`` reads from them, the one line it
says about a malformed one, and that the password shows in none of its output, nor in the settings'
errors, scrubbing and log lines that build on it."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import SecretStr, ValidationError

from ingest import dsn, logs
from ingest.errors import ConfigError
from ingest.settings import Settings, load_settings, scrub

PW = "S3cr3t-Pw-7731"

# dsn -> (host, port, dbname, user, password) as libpq reads it
VALID: list[tuple[str, tuple[str, int, str, str | None, str | None]]] = [
    (f"postgresql://ingest:{PW}@db.example:6543/cat", ("db.example", 6543, "cat", "ingest", PW)),
    (f"postgres://ingest:{PW}@db.example/cat", ("db.example", 5432, "cat", "ingest", PW)),
    (f"postgresql://ingest:{quote(PW + '@/: ?', safe='')}@h/db", ("h", 5432, "db", "ingest", PW + "@/: ?")),
    (f"postgresql://ingest@h/db?sslmode=require&password={PW}", ("h", 5432, "db", "ingest", PW)),
    (f"postgresql://h/db?pass%77ord={PW}", ("h", 5432, "db", None, PW)),  # libpq decodes the key too
    (f"postgresql://u:{PW}@[::1]:5433/db", ("::1", 5433, "db", "u", PW)),
    (f"postgresql://u:{PW}@/db?host=/var/run/postgresql", ("/var/run/postgresql", 5432, "db", "u", PW)),
    (f"postgresql://u:{PW}@h/db?application_name=a@b", ("h", 5432, "db", "u", PW)),
    ("postgresql://h", ("h", 5432, "postgres", None, None)),
    (f"host=localhost port=5432 user=ingest_admin password={PW} dbname=ingest",
     ("localhost", 5432, "ingest", "ingest_admin", PW)),
    (f"host=h user=u password = '{PW} with \\' quote' dbname=d", ("h", 5432, "d", "u", f"{PW} with ' quote")),
    (f"host=h user=u password={PW}\\ x dbname=d", ("h", 5432, "d", "u", f"{PW} x")),
    (f"user=u password={PW}", ("localhost", 5432, "u", "u", PW)),  # dbname defaults to the user, as in libpq
    ("host=h dbname=d", ("h", 5432, "d", None, None)),
    (f"host=h port='' user=u password={PW}", ("h", 5432, "u", "u", PW)),  # an empty port is the default
]  # fmt: skip

# malformed dsn -> the cause, in our words
MALFORMED: list[tuple[str, str]] = [
    ("", "it is empty"),
    (f"postgresql://u:{PW}@[bad/db", "a [ around the host address has no closing ]"),
    (f"postgresql://u:{PW}@[]/db", "the host address between [ ] is empty"),
    (f"postgresql://u:{PW}@[::1]x/db", "after the ] of an IPv6 host address"),
    (f"postgresql://u:{PW}@h:abc/db", "the port must be a number from 1 to 65535"),
    (f"postgresql://u:{PW}@h:70000/db", "the port must be a number from 1 to 65535"),
    (f"postgresql://u:{PW}@h/db?port=x1", "the port must be a number from 1 to 65535"),
    (f"postgresql://u:{PW}%zz@h/db", "a % must start an escape of two hex digits"),
    (f"postgresql://u:p%00{PW}@h/db", "%00 (a NUL character) is not allowed"),
    (f"postgresql://u:pa/{PW}@h/db", "write : / @ in the user name or password as %3A %2F %40"),
    (f"postgresql://u:pa@{PW}@h/db", "the host contains an @"),
    (f"postgresql://u:{PW}@h/db?foo=bar", "unknown query parameter 'foo'"),
    (f"postgresql://u:{PW}@h/db?sslmode", "each query parameter must be one key=value"),
    (f"postgresql://u:{PW}@h1,h2/db", "several hosts are not supported"),
    (f"mysql://u:{PW}@h/db", "scheme must be postgresql:// or postgres://"),
    (f"postgresql+psycopg://u:{PW}@h/db", "scheme must be postgresql:// or postgres://"),
    (f" postgresql://u:{PW}@h/db", "no spaces before postgresql://"),
    (f"host=h port=abc user=u password={PW} dbname=d", "the port must be a number from 1 to 65535"),
    (f"host=h user=u password='{PW} dbname=d", "a quoted value has no closing '"),
    (f"host=h foo=bar password={PW}", "unknown keyword 'foo'"),
    (f"host= password={PW}", "host= has no value before the next pair"),
    (f"host=h {PW}", "expected a postgresql:// URL or keyword=value pairs"),
    (f"host=h password {PW}", "expected a postgresql:// URL or keyword=value pairs"),
    (f"host=h\0 password={PW}", "it contains a NUL character"),
    (f"postgresql://h/db&password={PW}", "the dbname holds a password= pair"),
    (f"host=h options=password={PW}", "options= has no value before the next pair"),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_both_forms_are_read_as_libpq_reads_them(
    text: str, expected: tuple[str, int, str, str | None, str | None]
) -> None:
    info = dsn.parse(text)
    assert (info.host, info.port, info.dbname, info.user, info.password) == expected
    assert dsn.password_of(text) == expected[4]
    host = f"[{expected[0]}]" if ":" in expected[0] else expected[0]
    assert dsn.where(text) == f"{host}:{expected[1]}/{expected[2]}"
    for shown in (dsn.redact(text), dsn.where(text), repr(info), str(info)):
        assert PW not in shown, shown


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (f"postgresql://u:{PW}@h:1/db", "postgresql://u:***@h:1/db"),
        ("postgresql://h/db", "postgresql://h/db"),
        (f"postgresql://u@h/db?sslmode=require&password={PW}&x=1", "postgresql://u@h/db?sslmode=require&password=***&x=1"),
        (f"postgresql://u:{PW}@h/db?application_name=a@b", "postgresql://u:***@h/db?application_name=a@b"),
        (f"postgresql://u:pa@{PW}@h/db", "postgresql://u:***@h/db"),  # an unescaped @ in the password
        (f"postgresql://u:pa/{PW}@h/db", "postgresql://u:***@h/db"),  # an unescaped / in it
        (f"host=h user=u password={PW} dbname=d", "host=h user=u password=*** dbname=d"),
        (f"host=h password = '{PW} \\' x' dbname=d", "host=h password = *** dbname=d"),
        (f"host=h password='{PW} dbname=d", "host=h password=***"),  # unclosed: hidden to the end
        (f"host=h sslpassword={PW} dbname=d", "host=h sslpassword=*** dbname=d"),
        (f"host=h {PW} dbname=d", "host=h *** dbname=d"),  # a word that is no pair may be a password
        (f"postgresql://h/db?sslmode=require?password={PW}", "postgresql://h/db?sslmode=require?password=***"),
        (f"postgresql://h/db&password={PW}", "postgresql://h/db&password=***"),  # the ? forgotten
        ("", ""),
    ],
)  # fmt: skip
def test_redact_hides_the_password_and_keeps_the_rest(text: str, redacted: str) -> None:
    assert dsn.redact(text) == redacted


@pytest.mark.parametrize(("text", "cause"), MALFORMED)
@pytest.mark.parametrize("setting", ["INGEST_DATABASE_URL", "INGEST_API_DATABASE_URL"])
def test_a_malformed_dsn_is_one_line_naming_the_setting_and_the_cause(text: str, cause: str, setting: str) -> None:
    with pytest.raises(ConfigError) as raised:
        dsn.parse(text, setting=setting)
    line = str(raised.value)
    assert line.startswith(f"{setting}: not a PostgreSQL connection string ({dsn.redact(text)}): "), line
    assert cause in line and "\n" not in line
    error = raised.value  # libpq's exception, which quotes the string, is not attached to ours
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    for shown in (line, dsn.redact(text), dsn.where(text)):
        assert PW not in shown, shown


@pytest.mark.parametrize(
    ("text", "password"),
    [
        (f"postgresql://u:{PW}%zz@h/db", f"{PW}%zz"),  # as written: what a library's message would echo
        (f"postgresql://u:pa/{PW}@h/db", f"pa/{PW}"),
        (f"postgresql://u@h/db?password={PW}&foo=1", PW),
        (f"mysql://u:{PW}@h/db", PW),
        (f"host=h user=u password='{PW} dbname=d", f"{PW} dbname=d"),
        (f"host=h foo=bar password='{PW} \\' x'", f"{PW} ' x"),
        ("host=h foo=bar", None),
        ("garbage", None),
    ],
)
def test_password_of_finds_the_password_of_a_malformed_dsn(text: str, password: str | None) -> None:
    assert dsn.password_of(text) == password


def test_redact_and_where_never_raise_and_never_show_the_password() -> None:
    # strings made of what matters to both forms, alone and followed by a password= pair
    rng = random.Random(7731)
    pieces = ["postgresql://", "postgres://", "mysql://", "u", ":", "@", "/", "?", "&", "=", "'", "\\", " ", "%", "%4",
              "[", "]", ",", "host=", "port=", "password", "password=", "password = '", "h", "5432", "db",
              "\0"]  # fmt: skip
    for _ in range(3000):
        parts = rng.choices(pieces, k=rng.randint(0, 12))
        text = "".join(parts)
        dsn.redact(text)
        dsn.where(text)
        dsn.password_of(text)
        # whatever comes before it, a password= pair stays hidden (in a URL after a &, else after a space)
        with_pw = f"{text}{'&' if text.startswith(('postgresql://', 'postgres://', 'mysql://')) else ' '}password={PW}"
        assert PW not in dsn.redact(with_pw) and PW not in dsn.where(with_pw), with_pw
        try:
            dsn.parse(with_pw)
        except ConfigError as exc:
            assert PW not in str(exc), with_pw


def test_redact_pairs_hides_keyword_passwords_in_any_text() -> None:
    text = f"connection 'host=h password={PW} dbname=d' failed; retry with password = '{PW} b'"
    assert dsn.redact_pairs(text) == "connection 'host=h password=*** dbname=d' failed; retry with password = ***"


# ----------------------------------------------------------------------------- callers


@pytest.mark.parametrize(("text", "cause"), [m for m in MALFORMED if m[0].strip() and "\0" not in m[0]])
def test_settings_refuse_a_malformed_dsn_at_load_in_one_line(
    text: str, cause: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INGEST_API_DATABASE_URL", text)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    line = str(raised.value)
    assert line.startswith("invalid settings: INGEST_API_DATABASE_URL: not a PostgreSQL connection string ("), line
    assert cause in line and "\n" not in line and PW not in line and "Value error" not in line


def test_pydantic_own_error_text_does_not_show_a_rejected_dsn() -> None:
    raw: dict[str, Any] = {"database_url": f"host=h password={PW} fsync=off", "_env_file": None}  # as read
    with pytest.raises(ValidationError) as raised:
        Settings(**raw)
    assert "unknown keyword 'fsync'" in str(raised.value) and PW not in str(raised.value)


def test_a_blank_dsn_is_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INGEST_DATABASE_URL", "  ")
    assert load_settings().database_url is None


KEYWORD_DSN = f"host=db.example port=5432 user=ingest password='{PW}' dbname=ingest"


def test_secrets_hold_the_password_of_a_keyword_dsn_alone() -> None:
    settings = Settings(database_url=SecretStr(KEYWORD_DSN), _env_file=None)  # type: ignore[call-arg]
    values = {s.get_secret_value() for s in settings.secrets() if s is not None}
    assert {KEYWORD_DSN, PW} <= values
    assert PW in {s.get_secret_value() for s in settings.secrets(whole_dsns=False) if s is not None}
    assert KEYWORD_DSN not in {s.get_secret_value() for s in settings.secrets(whole_dsns=False) if s is not None}
    # a library's message quoting the parts apart, then the whole string
    message = f'password {PW} refused for "ingest"; dsn {KEYWORD_DSN}'
    assert scrub(message, *settings.secrets()) == 'password *** refused for "ingest"; dsn ***'


def test_log_lines_hide_keyword_passwords() -> None:
    settings = Settings(database_url=SecretStr(KEYWORD_DSN), _env_file=None)  # type: ignore[call-arg]
    logs.register_secrets(settings)
    record = logging.LogRecord("ingest.test", logging.INFO, __file__, 1, "dsn %s, unconfigured %s", None, None)
    record.args = (KEYWORD_DSN, "host=x password=other-Pw-1234 dbname=y")
    logs.REDACTOR.filter(record)
    assert record.getMessage() == (
        "dsn host=db.example port=5432 user=ingest password=*** dbname=ingest, "
        "unconfigured host=x password=*** dbname=y"
    )
