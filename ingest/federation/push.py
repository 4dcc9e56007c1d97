"""One push of our catalogue to a target: per collection, the collection document, then the items
whose ``updated`` is past the cursor (less the settle window) and that differ from what the target
holds, then DELETEs for what our catalogue no longer has; the cursor moves only when all of it went
through. A target that goes away mid-push stops the run: the next one reads from the same cursor and
skips what the target already holds (the digests), so it resumes where this one stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from ingest.access.policy import AccessPolicy
from ingest.adapters import pgstac
from ingest.catalog.loading import server_now
from ingest.errors import ConfigError, IngestError, UpstreamUnavailable
from ingest.federation import plan, records
from ingest.federation.client import ItemRejected, Upstream
from ingest.settings import RegisterTarget, Settings
from ingest.state import locks
from ingest.state.db import connect

log = logging.getLogger(__name__)

PAGE = 200  # items read from pgstac and compared at a time
NOT_OURS = "not in our catalogue"


class RegistrationRejected(IngestError):
    """The target refused some of our documents (each reported); the others went through."""

    exit_code = 65  # EX_DATAERR


class RegisterRunning(IngestError):
    """Another process pushes to this target right now."""

    exit_code = 75  # EX_TEMPFAIL


@dataclass
class CollectionReport:
    collection: str
    sent: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (item id, the target's reason)
    error: str | None = None  # the run stopped here (the target away): the cursor stayed

    @property
    def complete(self) -> bool:
        return self.error is None and not self.rejected

    @property
    def stopped(self) -> bool:
        """The target went away during this collection (not: the collection is not ours)."""
        return self.error is not None and self.error != NOT_OURS

    def line(self, target: str, *, dry_run: bool) -> str:
        verb = "would send" if dry_run else "sent"
        text = f"{target}/{self.collection}: {self.sent} {verb}, {self.unchanged} unchanged, "
        text += f"{self.deleted} {'to delete' if dry_run else 'deleted'}, {len(self.rejected)} rejected"
        return text + (f"; stopped: {self.error}" if self.error else "")


@dataclass
class TargetReport:
    target: str
    dry_run: bool
    collections: list[CollectionReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.complete for c in self.collections)

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "dry_run": self.dry_run, "collections": [asdict(c) for c in self.collections]}


def raise_for(reports: Sequence[TargetReport]) -> None:
    """The outcome of a run as the CLI's exit: a target away first (retry later), then rejections."""
    for r in reports:
        for c in r.collections:
            if c.stopped:
                raise UpstreamUnavailable(str(c.error))
    rejected = sum(len(c.rejected) for r in reports for c in r.collections)
    if rejected:
        raise RegistrationRejected(f"{rejected} document(s) rejected by the target; the others were pushed")


def public_form(settings: Settings) -> plan.PublicForm:
    gateway = settings.api_public_url if settings.asset_gateway else None
    return plan.PublicForm(gateway, settings.s3_bucket, tuple(i.discovery_url for i in settings.oidc_issuers))


def push_collection(
    conn: psycopg.Connection, settings: Settings, target: str, upstream: Upstream | None, collection: str
) -> CollectionReport:
    """``upstream`` None: a dry run (compared with what ``target`` holds; nothing sent or recorded)."""
    report = CollectionReport(collection)
    dsn = settings.require_database_url()
    doc = pgstac.get_collection(dsn, collection)
    if doc is None:
        report.error = NOT_OURS
        return report
    form = public_form(settings)
    protected = AccessPolicy.from_published(doc.get("ingest:access")).policy != "public"
    started = server_now(conn)
    since = plan.read_from(records.cursor(conn, target, collection), settings.updated_settle_s)
    try:
        if upstream is not None:
            upstream.put_collection(plan.public_collection(doc, form))
        for page in pgstac.items_updated_since(dsn, collection, since, page_size=PAGE):
            docs = [plan.public_item(item, form, protected=protected) for item in page]
            held = records.held(conn, target, collection, [d["id"] for d in docs])
            changed = plan.to_send(docs, held)
            report.unchanged += len(docs) - len(changed)
            if upstream is None:
                report.sent += len(changed)
            else:
                _send(conn, upstream, collection, changed, held, report)
        for item_id in records.gone(conn, target, collection):
            if upstream is not None:
                try:
                    upstream.delete_item(collection, item_id)
                except ItemRejected as exc:
                    report.rejected.append((item_id, f"deletion: {exc}"))
                    continue
                records.forget(conn, target, collection, item_id)
            report.deleted += 1
    except UpstreamUnavailable as exc:
        report.error = exc.message
        log.error("target %s: %s: push stopped, the next run resumes: %s", target, collection, exc.message)
        return report
    if upstream is not None and report.complete:
        records.save_cursor(conn, target, collection, started)
    return report


def _send(
    conn: psycopg.Connection,
    upstream: Upstream,
    collection: str,
    changed: Sequence[tuple[dict[str, Any], str]],
    held: Mapping[str, str],
    report: CollectionReport,
) -> None:
    """New items in ItemCollections of the target's ``batch`` (one request, one insert upstream); a
    batch the target refuses (one item it holds already, one it finds invalid) and changed items one by
    one, so that a refusal names its item and the others still go."""
    target = upstream.target
    new = [c for c in changed if c[0]["id"] not in held]
    singles = [c for c in changed if c[0]["id"] in held]
    for start in range(0, len(new), target.batch):
        chunk = new[start : start + target.batch]
        if len(chunk) > 1 and upstream.post_items(collection, [d for d, _ in chunk]):
            records.record_many(conn, target.name, collection, [(d["id"], digest) for d, digest in chunk])
            report.sent += len(chunk)
        else:
            singles.extend(chunk)
    for item, digest in singles:
        try:
            upstream.put_item(collection, item)
        except ItemRejected as exc:
            report.rejected.append((item["id"], str(exc)))
            log.error("target %s: item %s/%s rejected: %s", target.name, collection, item["id"], exc)
            continue
        records.record_many(conn, target.name, collection, [(item["id"], digest)])
        report.sent += 1


def push(settings: Settings, target: RegisterTarget, *, dry_run: bool = False) -> TargetReport:
    report = TargetReport(target.name, dry_run)
    with connect(settings) as conn:
        wanted = target.collections or pgstac.collection_ids(settings.require_database_url())
        if dry_run:
            report.collections = [push_collection(conn, settings, target.name, None, c) for c in wanted]
            return report
        busy = RegisterRunning(f"target {target.name}: a push is already in progress in another process")
        with locks.exclusive(conn, f"ingest-register:{target.name}", busy), Upstream(target) as upstream:
            for collection in wanted:
                one = push_collection(conn, settings, target.name, upstream, collection)
                report.collections.append(one)
                log.info("register %s", one.line(target.name, dry_run=False))
                if one.stopped:
                    break  # the target is away: the other collections wait for the next run too
    return report


def targets(settings: Settings, name: str | None) -> Sequence[RegisterTarget]:
    if not settings.register_targets:
        raise ConfigError("no registration target: set INGEST_REGISTER_TARGETS")
    if name is None:
        return settings.register_targets
    found = [t for t in settings.register_targets if t.name == name]
    if not found:
        known = ", ".join(t.name for t in settings.register_targets)
        raise ConfigError(f"no registration target {name!r} (INGEST_REGISTER_TARGETS has: {known})")
    return found
