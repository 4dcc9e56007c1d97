"""``ingest reconcile`` end to end: products catalogued through the pipeline from the local provider, then
the provider changed behind our back, and the reconciliation run as an OS process (and in-process where a
test needs the scheduler's job or the metrics).

Four Sentinel-2 L1C products, sensed ten minutes apart on 2026-03-01, are catalogued: A (tile 31TDH), B
(31TCJ), C (32TLR, baseline 05.10) and D (33UUP). Then the provider withdraws B and C, lists C' (the same
datatake and tile, baseline 05.11), republishes D with other bytes under the same name, and lists a new
product E (30TXN). One of each kind: E missing here, B gone upstream, C superseded by C', D's checksum
changed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from ingest.adapters import pgstac
from ingest.adapters.queue import ProductQueue
from ingest.daemon.scheduler import run_upstream
from ingest.devtools import generator
from ingest.devtools.catalog import ProviderEntry, add_entries, index_path, load_index
from ingest.devtools.publish import publish_safe
from ingest.harvest import harvest
from ingest.state.machine import State
from ingest.upstream.run import reconcile
from tests.conftest import ROOT, Stack, run_cli
from tests.integration.conftest import World, WorldFactory

# yesterday: the scheduled job reads the last upstream.window_days days up to now
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
T0 = DAY + timedelta(hours=10)
WINDOW = ("--start", f"{DAY:%Y-%m-%d}", "--end", f"{DAY + timedelta(days=1):%Y-%m-%d}")


def publish(world: World, tile: str, minutes: int, *, baseline: str = "05.10", seed: int = 0) -> ProviderEntry:
    """A generated L1C product on the provider, sensed ``minutes`` after T0."""
    sensing = T0 + timedelta(minutes=minutes)
    world.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=world.root) as tmp:
        safe = generator.generate_s2(
            Path(tmp), level="L1C", tile=tile, sensing=sensing.replace(tzinfo=None), baseline=baseline, size=60,
            seed=seed,
        )  # fmt: skip
        published = datetime.now(UTC).replace(microsecond=0)
        return publish_safe(world.root, safe, collection="S2_MSI_L1C", sensing=sensing, published=published)


def withdraw(world: World, *ids: str) -> None:
    """The provider stops listing these products: its index rewritten without them and swapped in (a new
    inode: the server reads it whole again)."""
    with tempfile.TemporaryDirectory(dir=world.root) as tmp:
        add_entries(Path(tmp), [e for e in load_index(world.root) if e.id not in ids])
        os.replace(index_path(Path(tmp)), index_path(world.root))


def spec_yaml(**upstream: Any) -> str:
    doc = yaml.safe_load((ROOT / "collections" / "sentinel-2-l1c.yaml").read_text())
    if upstream:
        doc["upstream"] = upstream
    return yaml.safe_dump(doc, sort_keys=False)


def cli(world: World, stack: Stack, *args: str, **upstream: Any) -> subprocess.CompletedProcess[str]:
    env = world.cli_env(stack, spec_yaml(**upstream))
    return run_cli("--json-logs", "reconcile", world.spec.id, *WINDOW, *args, env=env, timeout=180)


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def state_of(world: World, product_id: str) -> str:
    row = world.conn.execute("SELECT state FROM ingest.products WHERE id = %s", [product_id]).fetchone()
    return str(row[0]) if row else "unrecorded"


def item_of(world: World, product_id: str) -> str:
    row = world.conn.execute("SELECT item_id FROM ingest.products WHERE id = %s", [product_id]).fetchone()
    assert row is not None and row[0] is not None
    return str(row[0])


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    w = make_world("S2_MSI_L1C", count=0)
    for minutes, tile in enumerate(("31TDH", "31TCJ", "32TLR", "33UUP")):
        publish(w, tile, 10 * minutes)
    for pid in harvest(w.conn, w.provider, w.spec).new_ids:
        assert w.process(pid).state is State.CATALOGUED
    w.conn.commit()  # the CLI processes must see the products
    w.conn.autocommit = True
    return w


def test_reconcile_finds_each_kind_repairs_what_it_may_and_retires_only_when_told(world: World, stack: Stack) -> None:
    a, b, c, d = sorted(load_index(world.root), key=lambda e: e.datetime)
    withdraw(world, b.id, c.id)
    c2 = publish(world, "32TLR", 20, baseline="05.11")
    d2 = publish(world, "33UUP", 30, seed=99)
    e = publish(world, "30TXN", 40)
    assert d2.id == d.id and d2.checksum != d.checksum and c2.id != c.id

    # --- the text report: counts, then examples; exit 1
    done = cli(world, stack)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert "4 listed upstream, 4 catalogued here" in lines[0]
    assert [line.split()[:3] for line in lines[1:5]] == [
        ["missing", "here", "1"], ["gone", "upstream", "1"], ["superseded", "1", "upstream"],
        ["checksum", "changed", "1"],
    ]  # fmt: skip
    assert f"  missing    {e.id}" in lines
    assert f"  gone       {b.id}  (upstream.removed: keep)" in lines
    assert any(line.startswith(f"  superseded {c.id} -> {c2.id}") for line in lines)
    assert any(line.startswith(f"  checksum   {d.id}  (catalogued): recorded {d.multihash[:16]}...") for line in lines)
    assert lines[-1].endswith("4 difference(s): 1 missing here, 1 gone upstream, 1 superseded, 1 checksum changed")
    assert any(
        json.loads(x)["msg"].startswith(f"reconcile {world.spec.id}: 4 listed") for x in done.stderr.splitlines()
    )

    # --- in process: an area holding only A sees no difference; the scheduled job sets the gauge
    bbox = (a.bbox[0] - 0.01, a.bbox[1] - 0.01, a.bbox[2] + 0.01, a.bbox[3] + 0.01)
    narrow = reconcile(world.conn, world.provider, world.spec, start=DAY, end=DAY + timedelta(days=1), bbox=bbox)
    assert (narrow.found, narrow.differences.listed, narrow.differences.held) == (0, 1, 1)
    spec_dir = Path(world.cli_env(stack, spec_yaml(reconcile="0 5 * * *", window_days=2))["INGEST_COLLECTIONS_DIR"])
    run_upstream(world.settings.model_copy(update={"collections_dir": spec_dir}), world.spec.id)
    gauge = {
        k: REGISTRY.get_sample_value("ingest_upstream_differences", {"collection": world.spec.id, "kind": k})
        for k in ("missing", "gone", "superseded", "checksum")
    }
    assert gauge == {"missing": 1.0, "gone": 1.0, "superseded": 1.0, "checksum": 1.0}
    assert (state_of(world, e.id), state_of(world, c2.id)) == ("unrecorded", "unrecorded")  # report only

    # --- --repair --json with removed: keep: every id found; E and C' recorded and queued, D queued again
    # with the new checksum, B kept and reported: exit 1
    done = cli(world, stack, "--repair", "--json")
    assert done.returncode == 1, done.stderr
    doc = as_json(done)
    assert doc["counts"] == {"missing": 1, "gone": 1, "superseded": 1, "checksum": 1}
    assert (doc["missing"], doc["gone"]) == ([e.id], [b.id])
    assert doc["superseded"] == [{"old": c.id, "new": c2.id, "new_state": None, "old_listed": False}]
    assert doc["checksum"] == [{"id": d.id, "state": "catalogued", "recorded": d.multihash, "upstream": d2.multihash}]
    assert doc["exit_code"] == 1
    repair = doc["repair"]
    assert sorted(repair["queued"]) == sorted([e.id, c2.id]) and repair["reprocess"] == [d.id]
    assert repair["retired"] == [] and [(x["kind"], x["id"]) for x in repair["left"]] == [("gone", b.id)]
    assert "kept (upstream.removed: keep" in repair["left"][0]["why"]
    assert {p: state_of(world, p) for p in (e.id, c2.id, d.id, b.id)} == {
        e.id: "discovered", c2.id: "discovered", d.id: "discovered", b.id: "catalogued",
    }  # fmt: skip
    row = world.conn.execute("SELECT upstream_checksum, attempts FROM ingest.products WHERE id = %s", [d.id]).fetchone()
    assert row == (d2.multihash, 0)
    with ProductQueue(world.settings) as queue:
        assert {e.id, c2.id, d.id} <= queue.active()
    events = [r[0] for r in world.conn.execute("SELECT message FROM ingest.events WHERE product_id = %s", [d.id])]
    assert events[-2:] == [
        f"reconcile: upstream checksum changed: {d.multihash} -> {d2.multihash}",
        "reconcile repair: queued to be processed again",
    ]

    # --- a worker processes the queue: D re-made from its new bytes, C' catalogued and C retired by the
    # reprocessing policy (upstream.reprocessing: replace, the default; C' is the newer baseline)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "--json-logs", "worker"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}, **world.cli_env(stack)},
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: all(state_of(world, p) == "catalogued" for p in (e.id, c2.id, d.id)), 90, "the queue")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    item = pgstac.get_item(world.dsn, world.spec.id, item_of(world, d.id))
    assert item is not None and item["properties"]["ingest:upstream_checksum"] == d2.multihash
    assert state_of(world, c.id) == "retired" and item_of(world, c.id) == item_of(world, c2.id)
    assert pgstac.get_item(world.dsn, world.spec.id, item_of(world, c2.id)) is not None  # C''s now

    # --- reconciled again, now with removed: retire: nothing found but the one kept so far (C, replaced by C',
    # is retired: not a difference); B retired through retention's path (item, objects, /deleted-items)
    b_item = item_of(world, b.id)
    prefix = world.store.item_prefix(world.spec.id, b_item)
    assert world.store.list_keys(prefix)
    done = cli(world, stack, "--repair", "--json", removed="retire")
    assert done.returncode == 0, done.stderr
    doc = as_json(done)
    assert doc["counts"] == {"missing": 0, "gone": 1, "superseded": 0, "checksum": 0} and doc["gone"] == [b.id]
    assert doc["not_differences"]["replaced"] == []
    assert doc["repair"]["retired"] == [b.id] and doc["repair"]["left"] == [] and doc["exit_code"] == 0
    assert state_of(world, b.id) == "retired" and state_of(world, c2.id) == "catalogued"
    assert pgstac.get_item(world.dsn, world.spec.id, b_item) is None
    assert list(world.store.list_keys(prefix)) == []
    row = world.conn.execute(
        "SELECT item_deleted_at IS NOT NULL, objects_deleted_at IS NOT NULL, reason FROM ingest.retirements"
        " WHERE product_id = %s", [b.id],
    ).fetchone()  # fmt: skip
    assert row is not None and row[:2] == (True, True) and str(row[2]).startswith("gone upstream")
    last = world.conn.execute(
        "SELECT message FROM ingest.events WHERE product_id = %s ORDER BY id DESC LIMIT 1", [b.id]
    ).fetchone()
    assert last is not None and str(last[0]).startswith("upstream: gone upstream")

    # --- and then nothing differs
    done = cli(world, stack, removed="retire")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"{world.spec.id}: no difference with upstream"
