"""pgstac through pypgstac: the only module that imports pypgstac. Errors leave as IngestErrors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from ingest.errors import DatabaseUnavailable, IngestError
from ingest.settings import scrub
from ingest.state.db import connect, describe_dsn, dsn_password


@contextmanager
def pgstac_db(dsn: str) -> Iterator[PgstacDB]:
    # pypgstac's pool retries for 30 s on a dead server; a direct probe fails fast with our message
    with connect(dsn=dsn) as probe:
        probe.execute("SELECT 1")
    db = PgstacDB(dsn=dsn)
    try:
        yield db
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"pgstac at {describe_dsn(dsn)}: {scrub(str(exc).strip(), dsn, dsn_password(dsn))}"
        ) from None
    except psycopg.Error as exc:
        raise IngestError(
            f"pgstac at {describe_dsn(dsn)} refused: {scrub(str(exc).strip(), dsn, dsn_password(dsn))}"
        ) from None
    finally:
        db.close()


def upsert_collections(dsn: str, collections: Iterable[dict[str, Any]]) -> None:
    with pgstac_db(dsn) as db:
        Loader(db).load_collections(iter(list(collections)), insert_mode=Methods.upsert)


def get_collection(dsn: str, collection_id: str) -> dict[str, Any] | None:
    with pgstac_db(dsn) as db:
        row = db.query_one("SELECT content FROM pgstac.collections WHERE id = %s", [collection_id])
    return row if isinstance(row, dict) else None


def collection_ids(dsn: str) -> list[str]:
    with pgstac_db(dsn) as db:
        return [r[0] for r in db.query("SELECT id FROM pgstac.collections ORDER BY id")]


def version(dsn: str) -> str | None:
    with pgstac_db(dsn) as db:
        return db.version
