"""``ingest audit`` end to end: products catalogued through the pipeline (provider, S3, pgstac), then the
store changed behind the catalogue's back with a plain S3 client, and the audit run as an OS process
(and in-process where a test needs the clock or the scheduler's job).

The faults: one object deleted, one overwritten with another size, one stray prefix; objects outside
the collection's prefix that nothing may touch.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import yaml
from botocore.config import Config

from ingest import metrics
from ingest.adapters import pgstac
from ingest.adapters.queue import ProductQueue
from ingest.audit import run as audit_run
from ingest.audit.records import last_audits
from ingest.collections import Audit
from ingest.daemon.scheduler import run_audit
from ingest.harvest import harvest
from ingest.state.machine import State
from tests.conftest import ROOT, Stack, run_cli
from tests.integration.conftest import World, WorldFactory

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    w = make_world("S2_MSI_L2A", count=2)
    harvest(w.conn, w.provider, w.spec)
    for (pid,) in w.conn.execute("SELECT id FROM ingest.products WHERE collection = %s", [w.spec.id]).fetchall():
        assert w.process(pid).state is State.CATALOGUED
    w.conn.commit()  # the CLI processes must see the products
    w.conn.autocommit = True
    return w


def s3(stack: Stack) -> S3Client:
    """A plain client, as someone (or something) changing the bucket behind the catalogue's back."""
    return boto3.client(
        "s3",
        endpoint_url=stack.env["INGEST_S3_ENDPOINT_URL"],
        region_name=stack.env["INGEST_S3_REGION"],
        aws_access_key_id=stack.env["INGEST_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.env["INGEST_S3_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


def spec_yaml(**audit: Any) -> str:
    doc = yaml.safe_load((ROOT / "collections" / "sentinel-2-l2a.yaml").read_text())
    doc["audit"] = {"orphan_grace": "0s", **audit}  # a stray put a moment ago is judged
    return yaml.safe_dump(doc, sort_keys=False)


def cli(world: World, stack: Stack, *args: str) -> Any:
    return run_cli("--json-logs", *args, env=world.cli_env(stack, spec_yaml()), timeout=180)


def items(world: World) -> dict[str, dict[str, Any]]:
    return {i: pgstac.get_item(world.dsn, world.spec.id, i) or {} for i in pgstac.item_ids(world.dsn, world.spec.id)}


def key_of(asset: dict[str, Any], bucket: str) -> str:
    href = str(asset["href"])
    assert href.startswith(f"s3://{bucket}/"), href
    return href.removeprefix(f"s3://{bucket}/")


def product_of(world: World, item_id: str) -> str:
    row = world.conn.execute("SELECT id FROM ingest.products WHERE item_id = %s", [item_id]).fetchone()
    assert row is not None
    return str(row[0])


def all_keys(client: S3Client, bucket: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def assert_whole(world: World) -> None:
    """Every asset of every item resolves to its object, with the recorded size and SHA-256."""
    store = world.store
    for iid, item in items(world).items():
        for name, asset in item["assets"].items():
            info = store.head(key_of(asset, store.bucket))
            assert info is not None, f"{iid} {name}: {asset['href']} is not in S3"
            assert info.size == asset["file:size"], (iid, name)
            assert asset["file:checksum"] == "1220" + str(info.sha256), (iid, name)


def site_gauges(world: World) -> dict[str, float]:
    collector = metrics.DatabaseCollector(world.settings, tuple(s.value for s in State))
    return {
        f.name: s.value
        for f in collector.collect()
        for s in f.samples
        if f.name.startswith("ingest_audit_") and s.labels.get("collection") == world.spec.id
    }


def test_audit_finds_exactly_what_was_done_to_the_store_and_repair_mends_it(world: World, stack: Stack) -> None:
    client, bucket, c = s3(stack), world.settings.s3_bucket, world.spec.id
    prefix = world.store.collection_prefix(c)
    (first, a), (second, b) = sorted(items(world).items())
    cogs = sorted(k for k, v in a["assets"].items() if str(v["href"]).endswith(".tif"))
    deleted_key, resized_key = key_of(a["assets"][cogs[0]], bucket), key_of(b["assets"][cogs[1]], bucket)
    client.delete_object(Bucket=bucket, Key=deleted_key)
    client.put_object(Bucket=bucket, Key=resized_key, Body=b"truncated")
    stray = f"{prefix}stray-upload/B01.tif"
    client.put_object(Bucket=bucket, Key=stray, Body=b"nobody's")
    outside = {f"{world.store.prefix}/other-collection/X/B01.tif", "elsewhere/B01.tif", f"{prefix[:-1]}-2/X/B01.tif"}
    for key in outside:
        client.put_object(Bucket=bucket, Key=key, Body=b"not the audit's")
    keys_before = all_keys(client, bucket)

    found = cli(world, stack, "audit", c, "--json")
    assert found.returncode == 65, found.stderr
    assert "error: audit found 2 broken item(s) and 1 orphan object(s)" in found.stderr
    doc = json.loads(found.stdout)["collections"][0]
    assert (doc["collection"], doc["items"], doc["broken_items"], doc["orphan_objects"]) == (c, 2, 2, 1)
    assert doc["assets"] == len(a["assets"]) + len(b["assets"]) and doc["unchecked_assets"] == 0
    assert doc["objects"] == len({k for k in keys_before if k.startswith(prefix)})
    problem = {"asset": cogs[0], "key": deleted_key, "problem": "missing", "found": None}
    resized = {"asset": cogs[1], "key": resized_key, "problem": "size", "found": len(b"truncated")}
    assert doc["broken"] == [
        {
            "item_id": first,
            "product_id": product_of(world, first),
            "state": "catalogued",
            "problems": [{**problem, "expected": a["assets"][cogs[0]]["file:size"]}],
        },
        {
            "item_id": second,
            "product_id": product_of(world, second),
            "state": "catalogued",
            "problems": [{**resized, "expected": b["assets"][cogs[1]]["file:size"]}],
        },
    ]
    assert [o["key"] for o in doc["orphans"]] == [stray] and doc["orphans"][0]["size"] == len(b"nobody's")
    assert doc["repair"] is None and all_keys(client, bucket) == keys_before  # an audit changes nothing

    text = cli(world, stack, "audit", c)
    assert text.returncode == 65
    lines = text.stdout.splitlines()
    assert f"  broken {first} (product {product_of(world, first)}, catalogued): {cogs[0]} missing" in lines
    assert f"  orphan {stray} (8 B, " in text.stdout
    assert lines[-1] == f"{c}: 2 broken item(s), 1 orphan object(s) (8 B)"

    # status and the metrics read the same recorded numbers
    status = cli(world, stack, "status", c, "--json")
    assert status.returncode == 0, status.stderr
    last = json.loads(status.stdout)["collections"][0]["last_audit"]
    assert (last["broken_items"], last["orphan_objects"], last["items"], last["scheduled"]) == (2, 1, 2, False)
    status_text = cli(world, stack, "status", c)
    assert ": 2 broken item(s), 1 orphan object(s) in 2 items" in status_text.stdout
    gauges = site_gauges(world)
    assert (gauges["ingest_audit_broken_items"], gauges["ingest_audit_orphan_objects"]) == (2, 1)
    assert 0 <= gauges["ingest_audit_age_seconds"] < 120

    repaired = cli(world, stack, "audit", c, "--repair", "--json")
    assert repaired.returncode == 65, repaired.stderr  # what it found is still the finding
    fix = json.loads(repaired.stdout)["collections"][0]["repair"]
    assert sorted(fix["requeued"]) == sorted(product_of(world, i) for i in (first, second))
    assert (fix["deleted"], fix["orphans_left"], fix["items_left"]) == ([stray], [], [])
    assert all_keys(client, bucket) == keys_before - {stray}  # outside the prefix: untouched
    states: dict[str, str] = dict(
        world.conn.execute("SELECT id, state FROM ingest.products WHERE collection = %s", [c]).fetchall()
    )
    assert set(states.values()) == {"discovered"}
    with ProductQueue(world.settings) as queue:
        assert queue.active() >= set(states)
    history = world.conn.execute(
        "SELECT from_state, to_state, message FROM ingest.events WHERE product_id = %s ORDER BY id",
        [product_of(world, first)],
    ).fetchall()
    assert history[-2][:2] == ("catalogued", "claimed") and history[-2][2].startswith(f"audit: item {first}: ")
    assert history[-1][:2] == ("claimed", "discovered")
    recorded = world.conn.execute(
        "SELECT d.key, d.deleted_at IS NOT NULL, a.requeued, a.orphans_deleted FROM ingest.audit_deletions d"
        " JOIN ingest.audits a ON a.id = d.audit_id WHERE d.collection = %s",
        [c],
    ).fetchall()
    assert recorded == [(stray, True, 2, 1)]

    for pid in states:  # what a worker does with the queued jobs
        assert world.process(pid).state is State.CATALOGUED
    assert_whole(world)
    clean = cli(world, stack, "audit", c, "--deep", "--json")
    assert clean.returncode == 0, clean.stderr
    doc = json.loads(clean.stdout)["collections"][0]
    assert (doc["broken_items"], doc["orphan_objects"], doc["deep"], doc["without_checksum"]) == (0, 0, True, 0)
    assert all_keys(client, bucket) == (keys_before - {stray}) | {deleted_key}  # the lost object is back
    assert site_gauges(world)["ingest_audit_broken_items"] == 0
    assert "last audit" in cli(world, stack, "status", c).stdout


def test_deep_finds_a_same_size_overwrite_the_listing_cannot(world: World, stack: Stack) -> None:
    client, bucket, c = s3(stack), world.settings.s3_bucket, world.spec.id
    iid, item = sorted(items(world).items())[0]
    name = sorted(k for k, v in item["assets"].items() if str(v["href"]).endswith(".tif"))[0]
    key = key_of(item["assets"][name], bucket)
    body = b"\0" * item["assets"][name]["file:size"]
    sha = hashlib.sha256(body).hexdigest()
    client.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": sha})

    shallow = cli(world, stack, "audit", c, "--json")
    assert shallow.returncode == 0, shallow.stderr
    assert json.loads(shallow.stdout)["collections"][0]["broken_items"] == 0
    deep = cli(world, stack, "audit", c, "--deep", "--json")
    assert deep.returncode == 65
    (broken,) = json.loads(deep.stdout)["collections"][0]["broken"]
    recorded = item["assets"][name]["file:checksum"].removeprefix("1220")
    assert broken["item_id"] == iid
    assert broken["problems"] == [
        {"asset": name, "key": key, "problem": "checksum", "expected": recorded, "found": sha}
    ]


def test_repair_leaves_what_it_cannot_delete_alone_and_respects_owners_and_young_objects(
    world: World, stack: Stack
) -> None:
    client, bucket, c = s3(stack), world.settings.s3_bucket, world.spec.id
    prefix = world.store.collection_prefix(c)
    iid = sorted(items(world))[0]
    inside, loose, owned = f"{prefix}{iid}/junk.bin", f"{prefix}loose.txt", f"{prefix}on-its-way/B01.tif"
    for key in (inside, loose, owned):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    # a product on its way (failed, to be retried) owns its prefix although no item has it yet
    world.conn.execute(
        "INSERT INTO ingest.products (id, collection, provider, state, item_id) VALUES ('P-retry', %s, 'local',"
        " 'failed', 'on-its-way')",
        [c],
    )
    time.sleep(2.2)
    young = f"{prefix}uploading/B01.tif"  # written after the grace's start: an upload may be running
    client.put_object(Bucket=bucket, Key=young, Body=b"x")
    spec = world.spec.model_copy(update={"audit": Audit(orphan_grace=timedelta(seconds=2))})

    report = audit_run.audit(world.conn, world.settings, world.store, spec)
    assert sorted(u.obj.key for u in report.orphans) == [inside, loose]
    assert (report.broken_count, report.recent) == (0, 1)
    repaired = audit_run.repair(world.conn, world.settings, world.store, report)
    assert repaired.deleted == [] and repaired.requeued == []
    assert [(k, why.split(";")[0]) for k, why in repaired.orphans_left] == [
        (inside, f"inside the prefix of item {iid}, which the catalogue serves"),
        (loose, "not under an item prefix"),
    ]
    assert {inside, loose, owned, young} <= all_keys(client, bucket)
    assert_whole(world)


def test_scheduled_audit_records_its_result(world: World, stack: Stack) -> None:
    env = world.cli_env(stack, spec_yaml())
    settings = world.settings.model_copy(update={"collections_dir": ROOT / env["INGEST_COLLECTIONS_DIR"]})
    run_audit(settings, world.spec.id)
    last = last_audits(world.conn, [world.spec.id])[world.spec.id]
    assert (last.scheduled, last.broken_items, last.orphan_objects, last.items, last.requeued) == (True, 0, 0, 2, None)


def test_a_catalogue_that_lost_its_items_does_not_make_repair_empty_the_store(world: World, stack: Stack) -> None:
    """The items gone from pgstac (a restore, the wrong database): every object looks orphaned, and
    repair refuses to delete any of them."""
    client, bucket, c = s3(stack), world.settings.s3_bucket, world.spec.id
    before = all_keys(client, bucket)
    pgstac.delete_items(world.dsn, c, list(items(world)))
    spec = world.spec.model_copy(update={"audit": Audit(orphan_grace=timedelta(0))})
    report = audit_run.audit(world.conn, world.settings, world.store, spec)
    assert (report.items, report.orphan_count, report.present) == (0, len(before), 0)
    repaired = audit_run.repair(world.conn, world.settings, world.store, report)
    assert repaired.deleted == [] and len(repaired.orphans_left) == len(before)
    assert all("is this the right database" in why for _, why in repaired.orphans_left)
    assert all_keys(client, bucket) == before
