"""Benchmark: what pushing our catalogue to a federation catalogue (``ingest register``) costs per
1,000 items, against a plain pypgstac load of the same documents into the same kind of database,
same run.

    .venv/bin/python benchmarks/register.py [--rounds 3]

A throw-away stack; our catalogue: the 1,000 Sentinel-2 L2A items of ``benchmarks/search.py``'s small
catalogue (8 tiles x 125 dates) with the real collection. Each round makes two fresh pgstac databases:
one behind a real stac-fastapi-pgstac (Transactions on, under uvicorn on 127.0.0.1, a static token)
that ``ingest.federation.push`` fills through HTTP, one that pypgstac's loader fills with the documents
the push sends (the reference: the least any copy costs). Also timed: a second push (nothing to send:
the idempotent re-run a schedule mostly makes) and a dry run from no cursor (our side of a push alone:
reading, the public form, digests, comparing). Printed: seconds per 1,000 items, medians of the
rounds, and the ratio push / load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search as s
from _common import free_port, http_server, throwaway_stack

from ingest import stack as st
from ingest.adapters import pgstac
from ingest.collections import load_spec
from ingest.federation import plan, push
from ingest.settings import RegisterTarget, Settings

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def stac_fastapi(dsn: str, logs: Path) -> Iterator[str]:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "PG"))}
    env.update(
        PGUSER=str(info["user"]), PGPASSWORD=str(info["password"]), PGHOST=str(info["host"]),
        PGPORT=str(info["port"]), PGDATABASE=str(info["dbname"]), ENABLE_TRANSACTIONS_EXTENSIONS="true",
    )  # fmt: skip
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "stac_fastapi.pgstac.app:create_app",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with http_server("stac-fastapi-pgstac", cmd, env, logs / f"target-{port}.log", url, "/"):
        yield url


def fresh_database(admin: str, name: str) -> str:
    with psycopg.connect(s.with_database(admin, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = s.with_database(admin, name)
    st.migrate_database(dsn)
    return dsn


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()
    return int(row[0]) if row else -1


def run(args: argparse.Namespace) -> None:
    doc = load_spec(ROOT / "collections" / f"{s.COLLECTION}.yaml").stac_collection()
    with throwaway_stack() as env, tempfile.TemporaryDirectory(prefix="bench-register-") as tmp:
        ours = env["INGEST_DATABASE_URL"]
        pgstac.upsert_collections(ours, [doc])
        pgstac.load_items(ours, list(s.items_of(s.small_tiles(), doc)))
        n = count(ours)
        print(f"pgstac {pgstac.version(ours)}; our catalogue: {n:,} items")
        settings = Settings(_env_file=None, database_url=SecretStr(ours), updated_settle_s=60)  # type: ignore[call-arg]
        form = push.public_form(settings)
        docs = [
            plan.public_item(i, form, protected=False)
            for page in pgstac.items_updated_since(ours, s.COLLECTION, None)
            for i in page
        ]
        figures: dict[str, list[float]] = {"load": [], "ours": [], "push": [], "again": []}
        for r in range(args.rounds):
            reference = fresh_database(ours, "bench_reference")
            t0 = time.perf_counter()
            pgstac.upsert_collections(reference, [plan.public_collection(doc, form)])
            pgstac.load_items(reference, docs)
            figures["load"].append(time.perf_counter() - t0)

            upstream = fresh_database(ours, "bench_upstream")
            with psycopg.connect(ours, autocommit=True) as conn:
                conn.execute("TRUNCATE ingest.registered_items, ingest.registration_cursors")
            t0 = time.perf_counter()  # our side alone: read, public form, digests, compare; nothing sent
            dry = push.push(settings, RegisterTarget(name="bench", url="http://127.0.0.1:9"), dry_run=True)
            figures["ours"].append(time.perf_counter() - t0)
            assert sum(c.sent for c in dry.collections) == n
            with stac_fastapi(upstream, Path(tmp)) as url:
                target = RegisterTarget(name="bench", url=url, token=SecretStr("static"))
                t0 = time.perf_counter()
                report = push.push(settings, target)
                figures["push"].append(time.perf_counter() - t0)
                sent = sum(c.sent for c in report.collections)
                assert report.ok and sent == n and count(upstream) == n, (report, count(upstream))
                t0 = time.perf_counter()
                again = push.push(settings, target)
                figures["again"].append(time.perf_counter() - t0)
                assert sum(c.sent for c in again.collections) == 0
            print(f"  round {r + 1}: load {figures['load'][-1]:.2f} s, dry run {figures['ours'][-1]:.2f} s, "
                  f"push {figures['push'][-1]:.2f} s, "
                  f"second push {figures['again'][-1]:.2f} s", flush=True)  # fmt: skip
        per = {k: statistics.median(v) * 1000 / n for k, v in figures.items()}
        print(f"\nper 1,000 items (median of {args.rounds} rounds):")
        print(f"  pypgstac load into the target's database  {per['load']:7.2f} s")
        print(
            f"  ingest register through the Transactions  {per['push']:7.2f} s   ratio {per['push'] / per['load']:.1f}x"
        )
        print(f"    of which ours (read, form, digest; a dry run) {per['ours']:5.2f} s")
        print(f"  second push (nothing to send)             {per['again']:7.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
