"""Retention end to end: real products catalogued through the pipeline (provider, S3, pgstac), then
``ingest retain`` as an OS process, killed with SIGKILL in each phase and run again.

Six S2 L2A products: sensed 30, 20 and 10 days ago, two each (tiles 31TDH then 31TCJ, 10 minutes
apart). A policy of 15 days on sensing time removes the four older ones.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import requests
import yaml
from prometheus_client import REGISTRY

from ingest import metrics
from ingest.adapters import pgstac
from ingest.catalog.publish import sync_collections
from ingest.collections import CollectionSpec, Retention
from ingest.daemon.scheduler import run_retention
from ingest.reader import ensure_reader
from ingest.retention import RetentionRunning, plan
from ingest.state.machine import State
from tests.conftest import ROOT, Stack, run_cli
from tests.integration.api import api_server, with_user
from tests.integration.conftest import World, WorldFactory, catalogued_world

TDH_ONLY = {"type": "Polygon", "coordinates": [[[1.0, 43.0], [2.5, 43.0], [2.5, 44.0], [1.0, 44.0], [1.0, 43.0]]]}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    return catalogued_world(make_world, (30, 20, 10))


def with_policy(world: World, **policy: Any) -> CollectionSpec:
    """The world's spec with this retention policy, published in pgstac as a sync would."""
    spec = world.spec.model_copy(update={"retention": Retention(enabled=True, **policy)})
    sync_collections(world.settings, [spec])
    world.spec = spec
    return spec


def spec_yaml(policy: dict[str, Any]) -> str:
    doc = yaml.safe_load((ROOT / "collections" / "sentinel-2-l2a.yaml").read_text())
    doc["retention"] = {"enabled": True, **policy}
    return yaml.safe_dump(doc, sort_keys=False)


def retain(world: World, stack: Stack, policy: dict[str, Any], *args: str, **env: str) -> Any:
    return run_cli(
        "--json-logs", "retain", world.spec.id, *args, env=world.cli_env(stack, spec_yaml(policy), **env), timeout=180
    )


def items(world: World) -> dict[str, dict[str, Any]]:
    return {i: pgstac.get_item(world.dsn, world.spec.id, i) or {} for i in pgstac.item_ids(world.dsn, world.spec.id)}


def keys_of(item: dict[str, Any], bucket: str) -> set[str]:
    hrefs = [a.get("alternate", {}).get("s3", {}).get("href") or a["href"] for a in item["assets"].values()]
    return {h.removeprefix(f"s3://{bucket}/") for h in hrefs if h.startswith(f"s3://{bucket}/")}


def all_keys(world: World) -> set[str]:
    return set(world.store.list_keys(world.store.collection_prefix(world.spec.id)))


def product_of_item(world: World) -> dict[str, str]:
    rows = world.conn.execute("SELECT item_id, id FROM ingest.products WHERE collection = %s", [world.spec.id])
    return dict(rows.fetchall())


def assert_consistent(world: World) -> None:
    """No item points at a missing object; every object belongs to an item or to a pending retirement."""
    bucket = world.settings.s3_bucket
    present = all_keys(world)
    owned: set[str] = set()
    for iid, item in items(world).items():
        wanted = keys_of(item, bucket)
        assert wanted and wanted <= present, f"item {iid} points at deleted objects: {sorted(wanted - present)[:3]}"
        owned |= wanted
    pending = {
        r[0]
        for r in world.conn.execute(
            "SELECT item_id FROM ingest.retirements WHERE collection = %s AND objects_deleted_at IS NULL",
            [world.spec.id],
        )
    }
    prefix = world.store.collection_prefix(world.spec.id)
    orphans = {k for k in present - owned if k[len(prefix) :].split("/", 1)[0] not in pending}
    assert not orphans, f"objects nothing owns and nothing will clean: {sorted(orphans)[:3]}"


def assert_extent_follows_items(world: World) -> None:
    doc = pgstac.get_collection(world.dsn, world.spec.id)
    assert doc is not None
    rows = world.conn.execute(
        "SELECT min(datetime), max(end_datetime), st_xmin(st_extent(geometry)), st_ymin(st_extent(geometry)),"
        " st_xmax(st_extent(geometry)), st_ymax(st_extent(geometry)) FROM pgstac.items WHERE collection = %s",
        [world.spec.id],
    ).fetchone()
    assert rows is not None
    start, end, *bbox = rows
    interval = doc["extent"]["temporal"]["interval"][0]
    assert [datetime.fromisoformat(t) for t in interval] == [start, end]
    assert doc["extent"]["spatial"]["bbox"][0] == pytest.approx([float(v) for v in bbox])


def assert_retired_exactly(world: World, removed: set[str], kept: set[str], keys_before: dict[str, set[str]]) -> None:
    assert set(items(world)) == kept
    states: dict[str, str] = dict(
        world.conn.execute("SELECT item_id, state FROM ingest.products WHERE collection = %s", [world.spec.id])
    )
    assert {i for i, s in states.items() if s == "retired"} == removed
    assert {i for i, s in states.items() if s == "catalogued"} == kept
    rows = world.conn.execute(
        "SELECT item_id, item_deleted_at IS NOT NULL, objects_deleted_at IS NOT NULL, objects_deleted, last_error"
        " FROM ingest.retirements WHERE collection = %s",
        [world.spec.id],
    ).fetchall()
    assert {r[0] for r in rows} == removed
    assert all(r[1] and r[2] and r[4] is None for r in rows), rows
    present = all_keys(world)
    for iid in removed:
        assert not any(k.startswith(world.store.item_prefix(world.spec.id, iid)) for k in present), iid
    for iid in kept:
        assert keys_before[iid] <= present
    assert present == set().union(*(keys_before[i] for i in kept))
    events = world.conn.execute(
        "SELECT p.item_id, e.from_state, e.message FROM ingest.events e JOIN ingest.products p ON p.id = e.product_id"
        " WHERE p.collection = %s AND e.to_state = 'retired'",
        [world.spec.id],
    ).fetchall()
    assert sorted(e[0] for e in events) == sorted(removed)  # one event each
    assert all(e[1] == "catalogued" and e[2].startswith("retention: sensing time") for e in events)
    assert_extent_follows_items(world)


def oldest_four(world: World) -> tuple[set[str], set[str]]:
    by_time = sorted(items(world).items(), key=lambda kv: kv[1]["properties"]["datetime"])
    return {i for i, _ in by_time[:4]}, {i for i, _ in by_time[4:]}


def test_dry_run_lists_exactly_what_the_run_removes(world: World, stack: Stack) -> None:
    policy = {"max_age": "15d", "keep_latest": 1}
    bucket = world.settings.s3_bucket
    keys_before = {i: keys_of(item, bucket) for i, item in items(world).items()}
    expected_removed, expected_kept = oldest_four(world)
    extent_before = (pgstac.get_collection(world.dsn, world.spec.id) or {})["extent"]

    dry = retain(world, stack, policy, "--dry-run", "--list", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)["collections"][0]["plan"]
    assert set(planned["ids"]) == expected_removed
    assert (planned["items"], planned["remove"], planned["removes_all"]) == (6, 4, False)
    assert planned["bytes"] == sum(
        a["file:size"] for i in expected_removed for a in items(world)[i]["assets"].values() if "file:size" in a
    )
    assert planned["bytes"] > 0
    assert set(items(world)) == expected_removed | expected_kept  # a dry run changes nothing
    text = retain(world, stack, policy, "--dry-run")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].startswith(f"{world.spec.id}: 4 of 6 items would go (")

    refused = retain(world, stack, policy)  # not a terminal, no --yes
    assert refused.returncode != 0 and "pass --yes" in refused.stderr
    assert set(items(world)) == expected_removed | expected_kept

    done = retain(world, stack, policy, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["collections"][0]["done"]
    assert (report["retired"], report["items_deleted"], report["errors"]) == (4, 4, [])
    assert report["objects_deleted"] == sum(len(keys_before[i]) for i in expected_removed)
    assert_retired_exactly(world, expected_removed, expected_kept, keys_before)
    assert (pgstac.get_collection(world.dsn, world.spec.id) or {})["extent"] != extent_before
    for line in done.stderr.splitlines():
        json.loads(line)  # the log is JSON lines
    assert f'"retention {world.spec.id}: run ' in done.stderr

    again = retain(world, stack, policy, "--yes", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["collections"][0]["done"]["retired"] == 0


def test_keep_latest_and_area_in_the_plan(world: World) -> None:
    by_time = sorted(items(world).items(), key=lambda kv: kv[1]["properties"]["datetime"])
    ids = [i for i, _ in by_time]
    kept_by_age = plan(world.conn, with_policy(world, max_age="1d", keep_latest=2))
    assert [m.item_id for m in kept_by_age.remove] == ids[:4]  # oldest first
    assert (kept_by_age.kept_by_minimum, kept_by_age.removes_all) == (2, False)
    assert kept_by_age.oldest is not None and kept_by_age.newest is not None
    assert kept_by_age.oldest.isoformat()[:19] == by_time[0][1]["properties"]["datetime"][:19]

    outside = plan(world.conn, with_policy(world, area=TDH_ONLY))
    assert {m.item_id for m in outside.remove} == {i for i in ids if "_T31TCJ_" in i}
    assert len(outside.remove) == 3

    everything = plan(world.conn, with_policy(world, max_age="1d"))
    assert everything.removes_all and everything.count == 6


def test_a_policy_removing_every_item_is_refused_unless_forced(world: World, stack: Stack) -> None:
    policy = {"max_age": "1d", "keep_latest": 0}
    before = set(items(world))
    refused = retain(world, stack, policy, "--yes")
    assert refused.returncode == 65, refused.stderr
    assert "would remove all 6 items; nothing retired" in refused.stderr
    assert set(items(world)) == before
    assert world.conn.execute("SELECT count(*) FROM ingest.retirements").fetchone() == (0,)

    forced = retain(world, stack, policy, "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert items(world) == {}
    assert all_keys(world) == set()
    extent = (pgstac.get_collection(world.dsn, world.spec.id) or {})["extent"]
    assert extent["temporal"]["interval"][0][0].startswith(world.spec.stac.start.isoformat())  # configured again


@pytest.mark.parametrize("phase", ["products retired", "items deleted from pgstac", "objects of 1 products deleted"])
def test_kill_9_during_enforcement_then_a_rerun_ends_exact(world: World, stack: Stack, phase: str) -> None:
    policy = {"max_age": "15d"}
    bucket = world.settings.s3_bucket
    keys_before = {i: keys_of(item, bucket) for i, item in items(world).items()}
    removed, kept = oldest_four(world)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env |= world.cli_env(stack, spec_yaml(policy), INGEST_RETENTION_BATCH_SIZE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "--json-logs", "retain", world.spec.id, "--yes"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if phase in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert_consistent(world)  # whatever the moment, readers never trip
    assert_extent_follows_items(world)

    rerun = retain(world, stack, policy, "--yes", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert_retired_exactly(world, removed, kept, keys_before)
    assert_consistent(world)


def pending_gauge(world: World) -> dict[str, float]:
    collector = metrics.DatabaseCollector(world.settings, tuple(s.value for s in State))
    family = next(f for f in collector.collect() if f.name == "ingest_retirements_pending")
    return {sample.labels["collection"]: sample.value for sample in family.samples}


def removed_counter(collection: str) -> float:
    return REGISTRY.get_sample_value("ingest_retention_removed_items_total", {"collection": collection}) or 0.0


def test_the_scheduled_job_enforces_and_logs(world: World, stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    _, kept = oldest_four(world)
    env = world.cli_env(stack, spec_yaml({"max_age": "15d"}))
    settings = world.settings.model_copy(update={"collections_dir": ROOT / env["INGEST_COLLECTIONS_DIR"]})
    caplog.set_level("INFO", logger="ingest.retention")
    removed_before = removed_counter(world.spec.id)
    run_retention(settings, world.spec.id)
    assert set(items(world)) == kept
    assert f"retention {world.spec.id}: run " in caplog.text and "retired 4 products" in caplog.text
    assert removed_counter(world.spec.id) - removed_before == 4
    assert pending_gauge(world) == {world.spec.id: 0.0}  # all finished


def test_one_run_per_collection_at_a_time(world: World, stack: Stack) -> None:
    """A run in progress holds the collection's lock: a second (by hand or scheduled) stops with exit 75
    and touches nothing; a dry run still answers; once the first ends, the next one runs."""
    removed, kept = oldest_four(world)
    policy = {"max_age": "15d"}
    env = world.cli_env(stack, spec_yaml(policy))
    settings = world.settings.model_copy(update={"collections_dir": ROOT / env["INGEST_COLLECTIONS_DIR"]})
    with psycopg.connect(world.dsn, autocommit=True) as other:
        key = f"ingest-retention:{world.spec.id}"
        assert other.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key]).fetchone() == (True,)
        busy = retain(world, stack, policy, "--yes")
        assert busy.returncode == 75, busy.stderr
        assert f"{world.spec.id}: a retention run is already in progress" in busy.stderr
        with pytest.raises(RetentionRunning):
            run_retention(settings, world.spec.id)
        assert set(items(world)) == removed | kept
        assert world.conn.execute("SELECT count(*) FROM ingest.retirements").fetchone() == (0,)
        dry = retain(world, stack, policy, "--dry-run")
        assert dry.returncode == 0 and dry.stdout.startswith(f"{world.spec.id}: 4 of 6 items would go"), dry.stderr
    done = retain(world, stack, policy, "--yes")
    assert done.returncode == 0, done.stderr
    assert set(items(world)) == kept


def test_policy_and_deleted_items_through_the_stac_api(world: World, stack: Stack, tmp_path: Any) -> None:
    policy = {"max_age": "15d", "keep_latest": 1}
    spec = with_policy(world, max_age=timedelta(days=15), keep_latest=1)
    removed, kept = oldest_four(world)
    before = _now() - timedelta(seconds=1)
    done = retain(world, stack, policy, "--yes")
    assert done.returncode == 0, done.stderr
    role = "reader_" + secrets.token_hex(5)
    reader = with_user(world.dsn, role, secrets.token_urlsafe(18))
    ensure_reader(world.dsn, reader)
    try:
        with api_server(reader, tmp_path, INGEST_API_DELETIONS_SETTLE_S="0") as api:
            doc = requests.get(f"{api.url}/collections/{spec.id}", timeout=10).json()
            assert doc["ingest:retention"] == {
                "anchor": "datetime",
                "keep_latest": 1,
                "max_age": "P15D",
                "schedule": "30 3 * * *",
            }
            assert doc["extent"] == (pgstac.get_collection(world.dsn, spec.id) or {})["extent"]
            first = min(items(world)[i]["properties"]["datetime"] for i in kept)
            assert doc["extent"]["temporal"]["interval"][0][0][:19] == first[:19]

            url = f"{api.url}/deleted-items"
            since = before.isoformat().replace("+00:00", "Z")
            page = requests.get(url, params={"since": since, "collection": spec.id, "limit": "3"}, timeout=10).json()
            listed = [d["id"] for d in page["deleted"]]
            assert len(listed) == 3 and all(d["collection"] == spec.id for d in page["deleted"])
            nxt = next(link["href"] for link in page["links"] if link["rel"] == "next")
            rest = requests.get(nxt, timeout=10).json()
            listed += [d["id"] for d in rest["deleted"]]
            assert sorted(listed) == sorted(removed) and len(set(listed)) == 4
            later = requests.get(url, params={"since": rest["until"]}, timeout=10).json()
            assert later["deleted"] == []
            assert requests.get(url, params={"since": "yesterday"}, timeout=10).status_code == 400
            assert requests.get(url, timeout=10).status_code in (400, 422)
    finally:
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_objects_recorded_outside_the_store_prefix_are_never_deleted(world: World, stack: Stack) -> None:
    removed, kept = oldest_four(world)
    bucket = world.settings.s3_bucket
    keys_before = {i: keys_of(item, bucket) for i, item in items(world).items()}
    moved = sorted(removed)[0]
    # as if the product had been stored under another prefix (settings changed since): not ours to delete
    world.conn.execute(
        "UPDATE ingest.products SET s3_prefix = %s WHERE item_id = %s", [f"s3://{bucket}/elsewhere/{moved}/", moved]
    )
    done = retain(world, stack, {"max_age": "15d"}, "--yes")
    assert done.returncode == 70, done.stderr
    product_id = product_of_item(world)[moved]
    assert f"{product_id}: objects at s3://{bucket}/elsewhere/{moved}/ are not this store's prefix" in done.stderr
    assert set(items(world)) == kept  # every item went, the refused one's too
    assert keys_before[moved] <= all_keys(world)  # its objects stayed
    for iid in removed - {moved}:
        assert not keys_before[iid] & all_keys(world)
    row = world.conn.execute(
        "SELECT objects_deleted_at, last_error FROM ingest.retirements WHERE item_id = %s", [moved]
    ).fetchone()
    assert row is not None and row[0] is None and "left in place" in row[1]
    # the scheduler's site gauge shows the work left undone (the alert IngestRetentionUndone reads it)
    assert pending_gauge(world) == {world.spec.id: 1.0}
    # and `ingest status` says so, with what to run
    status = run_cli("status", world.spec.id, env=world.cli_env(stack, spec_yaml({"max_age": "15d"})))
    assert status.returncode == 0, status.stderr
    assert f"retention left 1 retired product(s) unfinished: `ingest retain {world.spec.id}`" in status.stdout
    as_json = run_cli("status", world.spec.id, "--json", env=world.cli_env(stack, spec_yaml({"max_age": "15d"})))
    assert json.loads(as_json.stdout)["collections"][0]["retirements_pending"] == 1
