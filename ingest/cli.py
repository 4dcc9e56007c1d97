"""The ``ingest`` command line. Every IngestError becomes one line on stderr and its exit code."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ingest import logs
from ingest.daemon import shutdown
from ingest.errors import IngestError
from ingest.settings import Settings, load_settings

if TYPE_CHECKING:  # the CLI imports the heavy modules lazily, per command
    import psycopg

    from ingest.app import App
    from ingest.collections import CollectionSpec
    from ingest.retention import Report

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, debug: bool) -> None:
        self.debug = debug
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            logs.register_secrets(self._settings)  # from here on no log line can carry them
            if not self.debug:
                logging.getLogger().setLevel(self._settings.log_level)
        return self._settings


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--json-logs/--text-logs", default=None, help="Log format (default: JSON unless stderr is a terminal).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, json_logs: bool | None) -> None:
    """Keep a STAC catalogue of Sentinel products filled and true."""
    ctx.obj = Context(debug)
    logs.setup("DEBUG" if debug else "INFO", json_lines=json_logs)


def _echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str))


# ----------------------------------------------------------------------------- stack


@cli.group()
def stack() -> None:
    """The local development stack: PostgreSQL+PostGIS+pgstac and an S3 server (SeaweedFS)."""


def _stack_config(settings: Settings) -> Any:
    from ingest.stack import StackConfig

    return StackConfig(
        root=settings.stack_dir,
        pg_port=settings.stack_pg_port,
        s3_port=settings.stack_s3_port,
        bucket=settings.s3_bucket,
        region=settings.s3_region,
        api_statement_timeout_s=settings.api_statement_timeout_s,
        api_idle_in_transaction_timeout_s=settings.api_idle_in_transaction_timeout_s,
    )


@stack.command("up")
@pass_ctx
def stack_up(c: Context) -> None:
    """Start (or confirm) the stack, migrate pgstac and the ingest schema, create the bucket."""
    from ingest import stack as st

    status = st.up(_stack_config(c.settings))
    click.echo(
        f"stack up: PostgreSQL pid {status.postgres_pid} on 127.0.0.1:{status.postgres_port}, "
        f"S3 pid {status.s3_pid} on 127.0.0.1:{status.s3_port}; settings in {status.env_file}"
    )


@stack.command("down")
@click.option("--purge", is_flag=True, help="Also delete the stack directory (database and logs).")
@pass_ctx
def stack_down(c: Context, purge: bool) -> None:
    """Stop exactly the processes `stack up` started."""
    from ingest import stack as st

    stopped = st.down(_stack_config(c.settings), purge=purge)
    what = [k for k, v in stopped.items() if v]
    click.echo(f"stopped: {', '.join(what) if what else 'nothing was running'}" + (" (purged)" if purge else ""))


@stack.command("status")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def stack_status(c: Context, as_json: bool) -> None:
    """Say what is running; exit 1 unless everything is."""
    from ingest import stack as st

    status = st.status(_stack_config(c.settings))
    if as_json:
        _echo_json(status.as_dict())
    else:
        for name, doc in status.as_dict().items():
            if isinstance(doc, dict):
                state = f"running (pid {doc['pid']}, port {doc['port']})" if doc["running"] else "stopped"
                click.echo(f"{name:9} {state}")
    sys.exit(0 if status.running else 1)


# ----------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """The database: pgstac and the ingest schema."""


@db.command("migrate")
@click.option("--sync-collections/--no-sync-collections", default=True, help="Also publish collections/ into pgstac.")
@pass_ctx
def db_migrate(c: Context, sync_collections: bool) -> None:
    """pypgstac migrate, alembic upgrade head, then collections sync (the one-shot deploy step)."""
    from ingest import collections as col
    from ingest.catalog.publish import sync_collections as sync
    from ingest.stack import migrate_database
    from ingest.state.db import connect

    dsn = c.settings.require_database_url()
    with connect(c.settings):
        pass  # fail fast, with a clean message, if the server is not there
    version = migrate_database(dsn)
    click.echo(f"pgstac {version}; ingest schema at head")
    if c.settings.api_database_url is not None:
        _create_reader(c.settings)
    if sync_collections:
        for cid in sync(c.settings, list(col.load_all(c.settings.collections_dir).values())):
            click.echo(f"synced {cid}")


@db.command("create-reader")
@pass_ctx
def db_create_reader(c: Context) -> None:
    """Create (or reset) the STAC API's login role from INGEST_API_DATABASE_URL: member of pgstac_read only.

    Runs as the migration role (INGEST_DATABASE_URL); `ingest db migrate` does it too when the setting is there."""
    _create_reader(c.settings)


def _create_reader(settings: Settings) -> None:
    from ingest.api.serve import require_api_dsn
    from ingest.reader import ensure_reader

    role = ensure_reader(
        settings.require_database_url(),
        require_api_dsn(settings),
        statement_timeout_s=settings.api_statement_timeout_s,
        idle_in_transaction_timeout_s=settings.api_idle_in_transaction_timeout_s,
    )
    click.echo(f"read-only API role {role}: member of pgstac_read, cannot write the catalogue")


# ----------------------------------------------------------------------------- STAC API


@cli.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True,
    help="Address to listen on (HTTPS: a proxy in front, or INGEST_API_TLS_CERT_FILE and _KEY_FILE).",
)  # fmt: skip
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option(
    "--workers", type=click.IntRange(1, 64), default=None, help="Server processes [default: INGEST_API_WORKERS, 2]."
)
@pass_ctx
def serve_cmd(c: Context, host: str, port: int, workers: int | None) -> None:
    """Serve the catalogue read-only as a STAC API, as the role of INGEST_API_DATABASE_URL, until SIGTERM."""
    from ingest.api.serve import run

    run(c.settings, host=host, port=port, workers=workers or c.settings.api_workers)


# ----------------------------------------------------------------------------- collections


@cli.group()
def collections() -> None:
    """Collection specs in collections/*.yaml."""


@collections.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=__import__("pathlib").Path))
@pass_ctx
def collections_validate(c: Context, files: tuple[Any, ...]) -> None:
    """Check every collection file (or the given ones); name the file and field of each error."""
    from ingest import collections as col
    from ingest.stac_validation import validate_collection

    paths = list(files) or sorted(c.settings.collections_dir.glob("*.yaml"))
    if not paths:
        raise IngestError(f"{c.settings.collections_dir}: no collection files (*.yaml)")
    failures = 0
    specs = []
    for path in paths:
        try:
            spec = col.load_spec(path)
            validate_collection(spec.stac_collection(), source=str(path))
        except IngestError as exc:
            failures += 1
            click.echo(f"error: {exc}", err=True)
            continue
        planned = len(spec.stac_collection()["item_assets"])
        click.echo(f"ok     {path} ({spec.id}: {planned} item assets, {len(spec.stac.item_assets) - planned} dropped)")
        for warning in spec.plan_warnings():
            click.echo(f"warning: {path}: {warning}", err=True)
        specs.append(spec)
    _warn_unpublished(c, specs)
    if failures:
        sys.exit(78)


def _warn_unpublished(c: Context, specs: list[Any]) -> None:
    """Say which published collection documents are older than their files (when a database is set)."""
    from ingest.catalog.publish import stale

    if not specs or c.settings.database_url is None:
        return
    try:
        older = stale(c.settings, specs)
    except IngestError as exc:  # validation needs no database: say so and go on
        click.echo(f"note: published versions not compared: {exc}", err=True)
        return
    for cid in older:
        click.echo(
            f"warning: {cid}: pgstac holds an older version (ingest collections sync {cid} publishes it)", err=True
        )


@collections.command("sync")
@click.argument("ids", nargs=-1)
@pass_ctx
def collections_sync(c: Context, ids: tuple[str, ...]) -> None:
    """Upsert the collections (all, or the given ids) into pgstac."""
    from ingest import collections as col
    from ingest.catalog.publish import sync_collections

    specs = col.load_all(c.settings.collections_dir)
    if ids:
        missing = sorted(set(ids) - set(specs))
        if missing:
            raise IngestError(f"unknown collection(s): {', '.join(missing)} (known: {', '.join(sorted(specs))})")
        specs = {k: v for k, v in specs.items() if k in ids}
    synced = sync_collections(c.settings, list(specs.values()))
    for cid in synced:
        click.echo(f"synced {cid}")


@collections.command("list")
@pass_ctx
def collections_list(c: Context) -> None:
    """List the collection specs and whether each is in pgstac."""
    from ingest import collections as col
    from ingest.adapters import pgstac

    specs = col.load_all(c.settings.collections_dir)
    in_db = set(pgstac.collection_ids(c.settings.require_database_url()))
    wide = max((len(cid) for cid in specs), default=0)
    source_wide = max((len(s.source.eodag_collection) for s in specs.values()), default=0)
    for cid, spec in specs.items():
        trig = spec.harvest.cron or f"every {spec.harvest.interval}"
        synced = "in pgstac" if cid in in_db else "NOT SYNCED"
        click.echo(f"{cid:{wide}} {synced:10} {spec.source.eodag_collection:{source_wide}} harvest {trig}")


# ----------------------------------------------------------------------------- acquisition


def _app(c: Context) -> Any:
    from ingest.app import App

    return App(c.settings)


@cli.command("harvest")
@click.argument("collection")
@click.option("--once", is_flag=True, required=True, help="One harvest now (the daemon schedules the others).")
@click.option("--discover-only", is_flag=True, help="Record new products without processing them.")
@pass_ctx
def harvest_cmd(c: Context, collection: str, once: bool, discover_only: bool) -> None:
    """Ask the provider for products published since the collection's watermark, then process every
    product that is due: the new ones, earlier ones never processed, failed ones whose retry is due."""
    app = _app(c)
    found = app.harvest(collection)
    click.echo(f"{collection}: {found.seen} seen, {len(found.new_ids)} new")
    if discover_only:
        return
    failed = 0
    for product_id in app.due(collection):
        out = app.process(product_id)
        failed += out.error is not None
        click.echo(f"{out.state.value:11} {product_id}" + (f"  ({out.error})" if out.error else ""))
    if failed:
        sys.exit(75)


@cli.command("backfill")
@click.argument("collection")
@click.option("--start", required=True, help="First sensing time, inclusive: 2026-03-01 or 2026-03-01T06:00Z (UTC).")
@click.option("--end", required=True, help="Last sensing time, exclusive.")
@click.option("--bbox", help="Area W,S,E,N in degrees (default: the collection's source.bbox).")
@click.option("--geometry", "geometry_file", type=click.Path(path_type=__import__("pathlib").Path),
              help="Area as a GeoJSON geometry, Feature or one-feature FeatureCollection.")  # fmt: skip
@click.option("--chunk", default="1d", show_default=True, help="Sensing time searched at once: 6h, 1d, 7d, P1D.")
@click.option("--dry-run", is_flag=True, help="Write nothing: list what would be ingested, with totals.")
@pass_ctx
def backfill_cmd(
    c: Context, collection: str, start: str, end: str, bbox: str | None, geometry_file: Any, chunk: str, dry_run: bool
) -> None:
    """Discover and enqueue every product sensed in [START, END) over the area, chunk by chunk.

    Resumable: running the same command again skips the chunks already done."""
    from ingest import backfill as bf
    from ingest import collections as col
    from ingest.adapters.queue import ProductQueue
    from ingest.state.db import connect

    spec = col.get(c.settings.collections_dir, collection)  # unknown collection: a config error (78)
    request = bf.make_request(spec, start=start, end=end, chunk=chunk, bbox=bbox, geometry_file=geometry_file)
    provider = _app(c).provider(spec)
    with connect(c.settings) as conn:
        conn.read_only = dry_run  # a dry run cannot write, by the server's word rather than ours
        plan = bf.prepare(conn, request, write=not dry_run)
        if plan.done:
            click.echo(f"resuming: {plan.done} of {plan.total} chunks done")
        if dry_run:
            for line in bf.dry_run(conn, provider, request, plan).lines():
                click.echo(line)
            return
        try:
            with ProductQueue(c.settings) as queue, bf.progress_for(plan, sys.stderr) as progress:
                summary = bf.run(conn, provider, queue, request, plan, progress)
        except KeyboardInterrupt:
            click.echo(f"interrupted: {plan.done} of {plan.total} chunks done; the same command resumes", err=True)
            sys.exit(130)
    click.echo(summary.line())


@cli.command("process")
@click.argument("product_id")
@click.option("--force", is_flag=True, help="Also re-process a catalogued or invalid product.")
@pass_ctx
def process_cmd(c: Context, product_id: str, force: bool) -> None:
    """Take one known product through the stages now."""
    from ingest.errors import StateConflict

    try:
        out = _app(c).process(product_id, force=force)
    except StateConflict as exc:
        raise StateConflict(f"{exc.message} (--force re-processes a catalogued or invalid product)") from None
    click.echo(f"{out.state.value:11} {product_id}" + (f"  ({out.error})" if out.error else ""))
    if out.error:
        sys.exit(75)


# ----------------------------------------------------------------------------- daemon


@cli.command("worker")
@click.option("--concurrency", type=click.IntRange(1), help="Products at once (default INGEST_WORKER_CONCURRENCY).")
@click.option("--queues", "queues", multiple=True, help="Queues to take jobs from (default: products).")
@pass_ctx
def worker_cmd(c: Context, concurrency: int | None, queues: tuple[str, ...]) -> None:
    """Take product jobs from the queue until SIGTERM/SIGINT (any number, on any number of machines)."""
    shutdown.latch()
    from ingest.daemon.worker import run_worker

    run_worker(c.settings, concurrency=concurrency, queues=list(queues) or None)


@cli.command("scheduler")
@pass_ctx
def scheduler_cmd(c: Context) -> None:
    """Plan harvests and reconciliation per collection; one leads, others wait as standby."""
    shutdown.latch()
    from ingest.daemon.scheduler import run_scheduler

    run_scheduler(c.settings)


@cli.command("run")
@click.option("--concurrency", type=click.IntRange(1), help="Products at once (default INGEST_WORKER_CONCURRENCY).")
@pass_ctx
def run_cmd(c: Context, concurrency: int | None) -> None:
    """The single-machine daemon: the scheduler and a worker in one process, until SIGTERM/SIGINT."""
    shutdown.latch()
    import threading

    from ingest.daemon.scheduler import run_scheduler
    from ingest.daemon.worker import run_worker

    stop = threading.Event()
    scheduler = threading.Thread(
        target=run_scheduler, args=(c.settings,), kwargs={"stop": stop, "install_signals": False}, name="scheduler"
    )
    scheduler.start()
    try:
        run_worker(c.settings, concurrency=concurrency)  # owns the signal handlers; returns once stopped
    finally:
        stop.set()
        scheduler.join()


# ----------------------------------------------------------------------------- operator


@cli.command("status")
@click.argument("collection", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status_cmd(c: Context, collection: str | None, as_json: bool) -> None:
    """Products per state, watermark, harvest lag, queue, recent failures and retention per collection."""
    from datetime import datetime

    from ingest.dashboard.data import status_document
    from ingest.state.db import connect

    app = _app(c)
    specs = [app.spec(collection)] if collection else [app.specs[i] for i in sorted(app.specs)]
    with connect(c.settings) as conn:
        doc = status_document(conn, specs, c.settings)  # the dashboard's figures, from the same code
    if as_json:
        _echo_json(doc)
        return
    for r in doc["collections"]:
        states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items())) or "no products"
        click.echo(f"{r['collection']}: {states}")
        found = r["last_harvest_found"]
        click.echo(f"  watermark {_when(r['watermark'])}, last harvest {_when(r['last_harvest_at'])}"
                   f" ({found if found is not None else '-'} found),"
                   f" oldest pending {_when(r['oldest_pending'])}")  # fmt: skip
        for f in r["recent_failures"]:
            click.echo(f"  {f['state']:7} {f['id']}  attempt {f['attempts']}: {f['last_error']}")
        if n := r["retirements_pending"]:
            click.echo(f"  retention left {n} retired product(s) unfinished: `ingest retain {r['collection']}`")
        if (a := r["last_audit"]) is not None:
            click.echo(f"  last audit {_when(a['finished_at'])}: {a['broken_items']} broken item(s),"
                       f" {a['orphan_objects']} orphan object(s) in {a['items']} items")  # fmt: skip
    for p in doc["providers"]:
        line = f"provider {p['provider']}: {p['slots_held']} of {p['slots_limit']} download slots in use"
        if p["paused"]:
            until = _when(datetime.fromisoformat(p["paused_until"]))
            line += (f", PAUSED until {until} ({p['pause_remaining_s']:.0f} s)"
                     f" after {_pause_cause(p)}")  # fmt: skip
        click.echo(line)
    depth = doc["queue"]
    click.echo("queue: " + (", ".join(f"{k} {v}" for k, v in sorted(depth.items())) or "empty"))


def _pause_cause(p: dict[str, Any]) -> str:
    return (f"HTTP {p['pause_status']}: " if p["pause_status"] else "") + (p["pause_cause"] or "a refusal")


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


@cli.command("retry")
@click.argument("collection")
@click.option("--state", "states", multiple=True, type=click.Choice(["failed", "invalid"]), default=["failed"],
              show_default=True, help="Which products to give back to the pipeline.")  # fmt: skip
@click.option("--since", type=click.DateTime(), help="Only products that changed at or after this time (UTC).")
@pass_ctx
def retry_cmd(c: Context, collection: str, states: tuple[str, ...], since: Any) -> None:
    """Give failed (or invalid) products back to the pipeline and queue them."""
    from datetime import UTC

    from ingest import ops
    from ingest.adapters.queue import ProductQueue
    from ingest.state.db import connect
    from ingest.state.machine import State

    spec = _app(c).spec(collection)
    with connect(c.settings) as conn:
        moved = ops.retry(conn, spec.id, [State(s) for s in states], since=since.replace(tzinfo=UTC) if since else None)
    with ProductQueue(c.settings) as queue:
        queued = queue.enqueue(moved)
    click.echo(f"{spec.id}: {len(moved)} products back to discovered, {queued} queued")


@cli.command("retain")
@click.argument("collection", required=False)
@click.option("--all", "all_collections", is_flag=True, help="Every collection whose retention policy is enabled.")
@click.option("--dry-run", is_flag=True, help="Say what would go (counts, bytes, times); change nothing.")
@click.option("--list", "list_ids", is_flag=True, help="With the summary, the ids of the items that go.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed when stdin is not a terminal).")
@click.option("--force", is_flag=True, help="Allow a policy to remove every item of a collection.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def retain_cmd(
    c: Context,
    collection: str | None,
    all_collections: bool,
    dry_run: bool,
    list_ids: bool,
    yes: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Apply the collections' retention policies (collections/*.yaml, retention:): retire the products
    they select, remove their items from the catalogue and their objects from S3."""
    from ingest import retention
    from ingest.state.db import connect

    app = _app(c)
    if all_collections == (collection is not None):
        raise click.UsageError("name one COLLECTION or pass --all")
    if all_collections:
        specs = [s for _, s in sorted(app.specs.items()) if s.retention.enabled]
        if not specs:
            click.echo("no collection has retention enabled (retention.enabled in collections/*.yaml)", err=True)
    else:
        specs = [app.spec(collection)]
        if not specs[0].retention.enabled:
            raise IngestError(f"{collection}: retention is not enabled (retention.enabled in {specs[0].path})")
    if not dry_run:  # the policy enforced is the one the collection document publishes
        from ingest.catalog.publish import publish_changed

        for cid in publish_changed(c.settings, specs):
            click.echo(f"published {cid}: its collection file changed since it was last published", err=True)
    reports: list[dict[str, Any]] = []
    failed: list[str] = []
    stopped: list[IngestError] = []  # refused or locked: the other collections still run
    with connect(c.settings) as conn:
        for spec in specs:
            try:
                with nullcontext() if dry_run else retention.exclusive(conn, spec.id):
                    report = _retain_one(
                        c,
                        app,
                        conn,
                        spec,
                        dry_run=dry_run,
                        list_ids=list_ids,
                        yes=yes,
                        force=force,
                        reports=reports if as_json else None,
                    )
            except (retention.RetentionRefused, retention.RetentionRunning) as exc:
                stopped.append(exc)
                continue
            if report is not None:
                failed.extend(report.errors)
    if as_json:
        _echo_json({"collections": reports})
    if failed:
        raise IngestError(f"retention left work undone ({len(failed)}): {failed[0]}; run it again once fixed")
    if stopped:
        for other in stopped[1:]:
            click.echo(f"error: {other.message}", err=True)
        raise stopped[0]


def _retain_one(
    c: Context,
    app: App,
    conn: psycopg.Connection,
    spec: CollectionSpec,
    *,
    dry_run: bool,
    list_ids: bool,
    yes: bool,
    force: bool,
    reports: list[dict[str, Any]] | None,
) -> Report | None:
    """Plan, print, confirm and enforce one collection's policy; the enforcement report, None on a dry run."""
    from ingest import retention

    plan = retention.plan(conn, spec)
    if reports is not None:
        reports.append({"plan": plan.to_dict(with_ids=list_ids)})
    else:
        for line in plan.lines(with_ids=list_ids):
            click.echo(line)
    if dry_run:
        return None
    if plan.count and not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("stdin is not a terminal: pass --yes to confirm the removal")
        click.confirm(f"Remove {plan.count} items from {spec.id}?", abort=True, err=True)
    report = retention.enforce(
        conn,
        plan,
        pgstac_dsn=c.settings.require_database_url(),
        store=app.store,
        force=force,
        batch_size=c.settings.retention_batch_size,
    )
    if reports is not None:
        reports[-1]["done"] = report.to_dict()
    else:
        n = report.finished_earlier
        earlier = f", {n} left by an earlier run finished" if n else ""
        click.echo(
            f"{spec.id}: {report.retired} retired, {report.items_deleted} items and"
            f" {report.objects_deleted} objects deleted{earlier}"
        )
    return report


@cli.command("audit")
@click.argument("collection", required=False)
@click.option("--repair", is_flag=True, help="Re-queue the products of broken items and delete orphan objects.")
@click.option("--deep", is_flag=True, help="Also compare each object's SHA-256 (its metadata, a HEAD each).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def audit_cmd(c: Context, collection: str | None, repair: bool, deep: bool, as_json: bool) -> None:
    """Check that every asset of every item (of COLLECTION, or all) is in S3 with its recorded size, and
    that every object under the collection's prefix belongs to something; exit 65 when not."""
    from ingest.audit import run
    from ingest.audit.progress import progress_for
    from ingest.audit.report import AuditFindings
    from ingest.state.db import connect

    app = _app(c)
    specs = [app.spec(collection)] if collection else [s for _, s in sorted(app.specs.items())]
    reports = []
    with connect(c.settings) as conn:
        for spec in specs:
            report = run.audit(conn, c.settings, app.store, spec, deep=deep, progress=progress_for(sys.stderr))
            if repair and report.found:
                run.repair(conn, c.settings, app.store, report)
            reports.append(report)
            if not as_json:
                for line in report.lines():
                    click.echo(line)
    if as_json:
        _echo_json({"collections": [r.to_dict() for r in reports]})
    broken, orphans = sum(r.broken_count for r in reports), sum(r.orphan_count for r in reports)
    if broken or orphans:
        raise AuditFindings(f"audit found {broken} broken item(s) and {orphans} orphan object(s)")


@cli.command("register")
@click.argument("target", required=False)
@click.option("--dry-run", is_flag=True, help="Say what would be sent and deleted; send nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def register_cmd(c: Context, target: str | None, dry_run: bool, as_json: bool) -> None:
    """Push our collections and their new and changed items to TARGET (or every one of
    INGEST_REGISTER_TARGETS), and delete there what our catalogue no longer has. Exit 65 when the
    target rejected some item, 69 when it stopped answering (the next run resumes)."""
    from ingest.federation import push

    reports = [push.push(c.settings, t, dry_run=dry_run) for t in push.targets(c.settings, target)]
    if as_json:
        _echo_json({"targets": [r.to_dict() for r in reports]})
    else:
        for r in reports:
            for one in r.collections:
                click.echo(one.line(r.target, dry_run=dry_run))
                for item_id, cause in one.rejected:
                    click.echo(f"  rejected {item_id}: {cause}")
    push.raise_for(reports)


@cli.command("reconcile")
@click.argument("collection")
@click.option("--start", required=True, help="First sensing time, inclusive: 2026-03-01 or 2026-03-01T06:00Z (UTC).")
@click.option("--end", required=True, help="Last sensing time, exclusive.")
@click.option("--bbox", help="Area W,S,E,N in degrees (default: the collection's source.bbox).")
@click.option("--repair", is_flag=True, help="Queue what is missing, superseded or changed; retire what is gone "
              "when the collection says upstream.removed: retire.")  # fmt: skip
@click.option("--force", is_flag=True, help="With --repair: retire even for a day the provider listed nothing for.")
@click.option("--json", "as_json", is_flag=True, help="The whole report, every id, as JSON on stdout.")
@pass_ctx
def reconcile_cmd(
    c: Context, collection: str, start: str, end: str, bbox: str | None, repair: bool, force: bool, as_json: bool
) -> None:
    """Compare what the provider lists for products sensed in [START, END) with what the catalogue holds:
    missing here, gone upstream, superseded by a newer processing, checksum changed upstream.

    Exit 0 when nothing differs (or --repair mended or queued every difference), 1 when differences
    remain; errors exit as every command's do (2 a wrong command line, 69 provider or database away)."""
    from datetime import timedelta

    from ingest import backfill
    from ingest.state.db import connect
    from ingest.upstream.progress import progress_for
    from ingest.upstream.repair import Repairer
    from ingest.upstream.run import reconcile

    if force and not repair:
        raise click.UsageError("--force only changes what --repair retires")
    try:
        first, last = backfill.parse_time(start, name="start"), backfill.parse_time(end, name="end")
        area = backfill.parse_bbox(bbox) if bbox is not None else None
        backfill.chunks(first, last, timedelta(days=1))  # the window is sane
    except backfill.UsageError as exc:
        raise click.UsageError(exc.message) from None
    app = _app(c)
    spec = app.spec(collection)
    with connect(c.settings) as conn:
        repairer = Repairer(conn, c.settings, app.store, spec, force=force) if repair else None
        report = reconcile(
            conn, app.provider(spec), spec, start=first, end=last, bbox=area, repairer=repairer,
            progress=progress_for(sys.stderr),
        )  # fmt: skip
    if as_json:
        _echo_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(report.exit_code)


@cli.command("healthcheck")
@click.option(
    "--check", "checks", multiple=True, type=click.Choice(["database", "s3", "provider", "scheduler", "http"]),
    help="Only these checks (repeatable; default: all but http).",
)  # fmt: skip
@click.option("--url", help="Also check that this URL answers 200 (a process's /readyz, the API's /healthz).")
@click.option("--timeout", type=click.FloatRange(0.1), default=5.0, show_default=True, help="Seconds per check.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def healthcheck_cmd(c: Context, checks: tuple[str, ...], url: str | None, timeout: float, as_json: bool) -> None:
    """Check the database, S3, the provider and the scheduler; exit 0 when all are fine, 1 otherwise.

    For Docker HEALTHCHECK and Kubernetes exec probes; each failure names its dependency."""
    from ingest import health

    names = list(checks) or [*health.CHECKS, *(["http"] if url else [])]
    if "http" in names and not url:
        raise click.UsageError("--check http needs --url")
    results = health.run(c.settings, names, url=url, timeout_s=timeout)
    failed = [r for r in results if not r.ok]
    if as_json:
        _echo_json({"healthy": not failed, "checks": [r.to_dict() for r in results]})
    else:
        for r in results:
            click.echo(r.line())
    if failed:
        click.echo("unhealthy: " + "; ".join(r.detail for r in failed), err=True)
        sys.exit(1)


@cli.group()
def products() -> None:
    """Look at single products."""


@products.command("show")
@click.argument("product_id")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def products_show(c: Context, product_id: str, as_json: bool) -> None:
    """A product's record and its history from the events table."""
    from ingest import ops
    from ingest.state.db import connect

    with connect(c.settings) as conn:
        found = ops.history(conn, product_id)
    if found is None:
        raise IngestError(f"unknown product {product_id!r}")
    row, events = found
    if as_json:
        _echo_json({"product": row, "events": events})
        return
    for key in ("id", "collection", "provider", "state", "attempts", "next_attempt_at", "last_error",
                "published_at", "sensing_at", "size_bytes", "item_id", "s3_prefix"):  # fmt: skip
        if row.get(key) is not None:
            click.echo(f"{key:16} {row[key]}")
    click.echo("history:")
    for e in events:
        step = f"{e['from_state'] or '-'} -> {e['to_state']}"
        click.echo(f"  {_when(e['at'])}  {step:26} {e['worker'] or ''}  {e['message'] or ''}")


# ----------------------------------------------------------------------------- development tools


@cli.group()
def dev() -> None:
    """Development tools: the local provider and its generated products."""


def _default_provider_root(settings: Settings) -> Any:
    return settings.work_dir / "provider"


@dev.command("provider", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--root", type=click.Path(path_type=__import__("pathlib").Path), help="Provider root directory.")
@click.option("--port", type=int, help="Port (default: the one of INGEST_PROVIDER_URL).")
@click.option(
    "--flavour", type=click.Choice(["stac", "cdse"]), default="stac", show_default=True,
    help="stac: a STAC API; cdse: what the Copernicus Data Space speaks (OData, OpenID, token downloads).",
)  # fmt: skip
@click.pass_context
def dev_provider(ctx: click.Context, root: Any, port: int | None, flavour: str) -> None:
    """Serve generated products on 127.0.0.1 as a STAC API or as CDSE (fault knobs: see --help of the server)."""
    from urllib.parse import urlsplit

    settings: Settings = ctx.obj.settings
    root = root or _default_provider_root(settings)
    if port is None:  # the port the daemon is configured to reach it at
        where = settings.provider_mirror_url if flavour == "cdse" else settings.provider_url
        port = urlsplit(where).port or (15801 if flavour == "cdse" else 8765)
    if flavour == "cdse":
        from ingest.devtools.cdse.__main__ import main as serve
    else:
        from ingest.devtools.provider import main as serve
    sys.exit(serve(["--root", str(root), "--port", str(port), *ctx.args]))


@dev.command("generate")
@click.option("--root", type=click.Path(path_type=__import__("pathlib").Path), help="Provider root directory.")
@click.option("--count", type=click.IntRange(1), default=6, show_default=True)
@click.option(
    "--size", type=int, default=120, show_default=True,
    help="S2 10 m band width (10980: full size); S1 samples; S3 columns (OLCI 4865, SLSTR 1500: full size).",
)  # fmt: skip
@click.option(
    "--kind", "kinds", multiple=True,
    type=click.Choice(["S2_MSI_L2A", "S2_MSI_L1C", "S1_SAR_GRD", "S3_EFR", "S3_OLCI_L2LFR", "S3_SLSTR_L1RBT",
                       "S3_SLSTR_L2LST"]),
    help="Product kinds, round robin (default: S2_MSI_L2A, S2_MSI_L1C, S1_SAR_GRD).",
)  # fmt: skip
@click.option("--start", type=click.DateTime(), default="2026-01-01", show_default=True, help="First sensing time.")
@click.option("--seed", type=int, default=0, show_default=True)
@pass_ctx
def dev_generate(c: Context, root: Any, count: int, size: int, kinds: tuple[str, ...], start: Any, seed: int) -> None:
    """Generate products and publish them on the local provider."""
    from datetime import UTC

    from rich.progress import Progress

    from ingest.devtools.publish import KINDS, S3_KINDS, plan_products, publish_generated

    root = root or _default_provider_root(c.settings)
    chosen = tuple(k for k in (*KINDS, *S3_KINDS) if k in kinds) or KINDS
    plans = list(plan_products(count, kinds=chosen, start=start.replace(tzinfo=UTC), seed=seed))
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("generating", total=len(plans))
        for plan in plans:
            entry = publish_generated(root, plan, size=size)
            bar.advance(task)
            click.echo(f"published {entry.id} ({entry.collection}, {entry.size} bytes)")


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="ingest", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except IngestError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(0)
