"""Acquisition end to end: EODAG really talks HTTP to the local provider, state in the real database.

Each test gets its own provider root and server and its own collection id, so watermarks and
products never mix between tests.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.adapters.eodag import EodagProvider
from ingest.devtools.catalog import ProviderEntry, add_entries, sha256_file
from ingest.devtools.provider import Faults
from ingest.devtools.publish import ProductPlan, plan_products, publish_generated, publish_safe
from ingest.errors import ProviderUnavailable
from ingest.harvest import harvest
from ingest.pipeline import product_from_row
from ingest.retry import RetryPolicy
from ingest.stages.acquire import acquire
from ingest.stages.artifacts import ProviderProduct
from ingest.stages.unpack import UnpackLimits
from ingest.state import repo
from ingest.state.machine import State
from tests.conftest import FIXTURES, ROOT, Stack, free_port, run_cli
from tests.integration.conftest import START, World, WorldFactory
from tests.zips import Unseekable


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    return make_world("S2_MSI_L2A", count=3, size=60)


def _states(w: World) -> dict[str, str]:
    rows = w.conn.execute("SELECT id, state FROM ingest.products WHERE collection = %s", [w.spec.id]).fetchall()
    return dict(rows)


# ----------------------------------------------------------------------------- discovery


def test_harvest_records_each_product_once_and_advances_the_watermark(world: World) -> None:
    first = harvest(world.conn, world.provider, world.spec)
    assert sorted(first.new_ids) == sorted(e.id for e in world.entries)
    assert set(_states(world).values()) == {"discovered"}
    newest = max(e.published for e in world.entries)
    assert repo.get_watermark(world.conn, world.spec.id) == newest
    row = repo.get_product(world.conn, world.entries[0].id)
    assert row is not None and row["upstream_checksum"] == world.entries[0].multihash
    assert row["size_bytes"] == world.entries[0].size and row["published_at"] == world.entries[0].published

    again = harvest(world.conn, world.provider, world.spec)
    assert again.new_ids == [] and again.seen == 3  # the overlap re-reads them; nothing is added twice
    sent = json.loads(world.server.stats.to_dict()["recent"][-1]["body"])
    assert sent["query"]["published"]["gte"].startswith((newest - world.spec.harvest.overlap).strftime("%Y-%m-%dT%H"))
    n_events = world.conn.execute(
        "SELECT count(*) FROM ingest.events e JOIN ingest.products p ON p.id = e.product_id WHERE p.collection = %s",
        [world.spec.id],
    ).fetchone()
    assert n_events == (3,)


def test_late_published_product_inside_the_overlap_is_found(world: World) -> None:
    harvest(world.conn, world.provider, world.spec)
    watermark = repo.get_watermark(world.conn, world.spec.id)
    assert watermark is not None
    late = ProductPlan("S2_MSI_L2A", START + timedelta(days=3), watermark - timedelta(hours=20), seed=77)
    too_late = ProductPlan("S2_MSI_L2A", START + timedelta(days=4), watermark - timedelta(days=5), seed=78)
    late_entry = publish_generated(world.root, late, size=60)
    publish_generated(world.root, too_late, size=60)
    found = harvest(world.conn, world.provider, world.spec)
    # published 20 h before the watermark: inside the 2-day overlap; 5 days before: outside, by design
    assert found.new_ids == [late_entry.id]
    assert repo.get_watermark(world.conn, world.spec.id) == watermark  # never moves back


def test_max_products_caps_a_run_and_the_next_run_continues(world: World) -> None:
    spec = world.spec.model_copy(update={"harvest": world.spec.harvest.model_copy(update={"max_products": 2})})
    for plan in plan_products(3, kinds=("S2_MSI_L2A",), start=START + timedelta(days=1), seed=50):
        publish_generated(world.root, plan, size=60)
    runs = []
    for _ in range(4):
        runs.append(harvest(world.conn, world.provider, spec))
    assert [len(r.new_ids) for r in runs][:3] == [2, 2, 2] and not runs[-1].new_ids
    assert len(_states(world)) == 6


def test_unreachable_provider_is_a_clear_error(world: World, stack: Stack) -> None:
    dead = world.settings.model_copy(update={"provider_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(ProviderUnavailable, match=r"provider 'local' at http://127\.0\.0\.1:\d+"):
        harvest(world.conn, EodagProvider(dead), world.spec)
    assert _states(world) == {}
    # the same through the CLI: one line, exit code 69 (EX_UNAVAILABLE)
    env = {**stack.env, "INGEST_PROVIDER_URL": dead.provider_url, "INGEST_WORK_DIR": str(world.settings.work_dir),
           "INGEST_PROVIDER_SEARCH_RETRIES": "0"}  # fmt: skip
    done = run_cli("--text-logs", "harvest", "sentinel-2-l2a", "--once", env=env)
    assert done.returncode == 69, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: search on provider 'local' at http://127.0.0.1:") and "Connection refused" in last
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- download and verification


def test_download_verifies_and_unpacks(world: World) -> None:
    harvest(world.conn, world.provider, world.spec)
    pid = world.entries[0].id
    out = world.process(pid)
    assert out.state is State.CATALOGUED and out.error is None
    events = repo.events_of(world.conn, pid)
    assert [e["to_state"] for e in events] == [
        "discovered", "claimed", "downloaded", "converted", "uploaded", "catalogued"
    ]  # fmt: skip
    downloaded = events[2]["details"]
    assert downloaded["files"] > 10 and downloaded["bytes"] == world.entries[0].size
    assert not world.work_of(pid).exists()  # success: the work directory is gone


def _provider_product(w: World, product_id: str) -> ProviderProduct:
    row = repo.get_product(w.conn, product_id)
    assert row is not None
    return product_from_row({**row, "eodag_collection": w.spec.source.eodag_collection})


def _downloads_of(w: World, product_id: str) -> int:
    return sum(1 for r in w.server.stats.to_dict()["recent"] if r["path"].endswith(f"/download/{product_id}.zip"))


def test_archive_is_unpacked_while_eodag_streams_it_and_odd_archives_from_disk(world: World) -> None:
    harvest(world.conn, world.provider, world.spec)
    pid = world.entries[0].id
    work = world.settings.work_dir / "direct"
    got = acquire(
        world.provider, _provider_product(world, pid), work / pid, policy=RetryPolicy(max_attempts=1),
        limits=UnpackLimits(),
    )  # fmt: skip
    assert "download + unpack + digests (streamed)" in got.timings and "unpack + manifest checksums" not in got.timings
    assert got.files_verified > 10 and got.archive_bytes == world.entries[0].size and _downloads_of(world, pid) == 1
    assert not (work / pid / "download").exists() and not (work / pid / "unpacked.partial").exists()

    # the same product zipped by a writer that cannot seek back: stored members followed by data
    # descriptors, whose length only the central directory tells: downloaded whole, then unpacked
    src = world.root / "products" / f"{pid}.zip"
    odd_id = pid.replace("_N0510_", "_N0512_")

    raw = Unseekable()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename.replace(pid, odd_id), zin.read(info))
    (world.root / "products" / f"{odd_id}.zip").write_bytes(raw.out.getvalue())
    checksum, size = sha256_file(world.root / "products" / f"{odd_id}.zip")
    add_entries(world.root, [ProviderEntry(
        id=odd_id, collection="S2_MSI_L2A", geometry=world.entries[0].geometry, bbox=world.entries[0].bbox,
        datetime=START, published=START + timedelta(days=1), size=size, checksum=checksum, properties={},
    )])  # fmt: skip
    harvest(world.conn, world.provider, world.spec)
    got = acquire(
        world.provider, _provider_product(world, odd_id), work / odd_id, policy=RetryPolicy(max_attempts=1),
        limits=UnpackLimits(),
    )  # fmt: skip
    assert "unpack + manifest checksums" in got.timings and got.files_verified > 10
    assert _downloads_of(world, odd_id) == 2  # the stream, stopped at the first such member; then the file
    assert not (work / odd_id / "download").exists()


def test_a_503_pauses_the_provider_gives_the_product_back_then_it_succeeds(world: World) -> None:
    # 503: the provider is overloaded or down, not the product: the fleet pauses it, no attempt counted
    harvest(world.conn, world.provider, world.spec)
    world.server.set_faults(Faults(fail_first_n=1))  # the first download answers 503
    settings = world.settings.model_copy(update={"provider_pause_base_s": 1.0})
    pid = world.entries[1].id
    out = world.process(pid, settings=settings)
    assert out.released and out.state is State.DISCOVERED and "HTTP 503" in (out.error or ""), out
    row = repo.get_product(world.conn, pid)
    assert row is not None and row["attempts"] == 0 and row["next_attempt_at"] is not None
    time.sleep(max(0.0, (row["next_attempt_at"] - datetime.now(UTC)).total_seconds()) + 0.2)
    again = world.process(pid, settings=settings)
    assert again.state is State.CATALOGUED, again.error
    downloaded = next(e for e in repo.events_of(world.conn, pid) if e["to_state"] == "downloaded")
    assert downloaded["details"]["tries"] == 1
    assert repo.get_product(world.conn, pid)["attempts"] == 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("fault", "state", "cause"),
    [
        ("truncate", "failed", "interrupted|truncated|announced"),
        ("500", "failed", "HTTP 500"),
        ("vanish", "failed", "no longer has this product"),
        ("corrupt", "invalid", "differs from the provider's .* on all 3 downloads"),
    ],
)
def test_bad_downloads_end_failed_or_invalid_with_the_cause(world: World, fault: str, state: str, cause: str) -> None:
    harvest(world.conn, world.provider, world.spec)
    bad, good = world.entries[0].id, world.entries[1].id
    world.server.set_faults(Faults(products={bad: fault}))
    out = world.process(bad)
    assert out.state.value == state
    row = repo.get_product(world.conn, bad)
    assert row is not None and row["state"] == state
    assert row["last_error"] and __import__("re").search(cause, row["last_error"]), row["last_error"]
    if state == "failed" and fault != "vanish":
        assert row["next_attempt_at"] is not None  # the retry policy brings it back later
    if fault == "vanish":
        assert row["next_attempt_at"] is None  # gone upstream: only an operator retries
    # nothing half-done is left that could pass for complete
    work = world.work_of(bad)
    assert not list(work.rglob("*.zip")) and not list(work.rglob("*.partial"))
    assert not (work / "unpacked").exists()
    # other products are not affected
    assert world.process(good).state is State.CATALOGUED


def _publish_raw_zip(root: Path, product_id: str, files: dict[str, bytes]) -> ProviderEntry:
    """Put an arbitrary (possibly hostile) archive on the provider, bypassing its own checks."""
    target = root / "products" / f"{product_id}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    checksum, size = sha256_file(target)
    geometry = {"type": "Polygon", "coordinates": [[[1, 43], [2, 43], [2, 44], [1, 44], [1, 43]]]}
    entry = ProviderEntry(
        id=product_id, collection="S2_MSI_L2A", geometry=geometry, bbox=[1, 43, 2, 44],
        datetime=START, published=START + timedelta(days=1), size=size, checksum=checksum, properties={},
    )  # fmt: skip
    add_entries(root, [entry])
    return entry


def test_hostile_and_inconsistent_archives_are_invalid(world: World) -> None:
    evil = _publish_raw_zip(world.root, "S2X_EVIL", {"S2X_EVIL.SAFE/manifest.safe": b"<x/>", "../../escape": b"x"})
    # a real product whose band was altered after the manifest was written
    safe_src = next(iter(world.root.glob("products/*.zip")))
    tampered_dir = world.settings.work_dir.parent / "tampered"
    with zipfile.ZipFile(safe_src) as zf:
        zf.extractall(tampered_dir)
    safe = next(tampered_dir.glob("*.SAFE"))
    band = next(safe.rglob("*_B02_10m.jp2"))
    band.write_bytes(band.read_bytes()[:-1] + b"\x00")
    renamed = safe.with_name(safe.name.replace("_N0510_", "_N0511_"))
    safe.rename(renamed)
    tampered = publish_safe(
        world.root, renamed, collection="S2_MSI_L2A", sensing=START, published=START + timedelta(days=1)
    )
    found = harvest(world.conn, world.provider, world.spec)
    assert {evil.id, tampered.id} <= set(found.new_ids)
    out = world.process(evil.id)
    assert out.state is State.INVALID and "climbs out" in (out.error or "")
    out = world.process(tampered.id)
    assert out.state is State.INVALID
    assert "disagree with manifest.safe" in (out.error or "") and "B02_10m.jp2: MD5 mismatch" in (out.error or "")
    for pid in (evil.id, tampered.id):
        assert not world.work_of(pid).exists()  # terminal: its work directory is gone
    shutil.rmtree(tampered_dir)


def test_real_provider_zip_without_safe_layout_is_refused(world: World) -> None:
    real = FIXTURES / "eodag" / "download" / "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911.zip"
    target = world.root / "products" / real.name
    shutil.copy(real, target)
    checksum, size = sha256_file(target)
    geometry = {"type": "Polygon", "coordinates": [[[1, 43], [2, 43], [2, 44], [1, 44], [1, 43]]]}
    add_entries(world.root, [ProviderEntry(
        id=real.stem, collection="S2_MSI_L2A", geometry=geometry, bbox=[1, 43, 2, 44], datetime=START,
        published=START, size=size, checksum=checksum, properties={},
    )])  # fmt: skip
    harvest(world.conn, world.provider, world.spec)
    out = world.process(real.stem)
    # eodag's test archive starts at GRANULE/ with no <id>.SAFE/ folder and no manifest: not a product
    assert out.state is State.INVALID and "expected one .SAFE or .SEN3 directory" in (out.error or "")


def _flip_member_byte(zip_path: Path, member_suffix: str) -> None:
    """Corrupt one byte of a member's compressed data, leaving the archive's directory intact."""
    with zipfile.ZipFile(zip_path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(member_suffix))
    data = bytearray(zip_path.read_bytes())
    name_len, extra_len = (
        int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"),
        int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little"),
    )
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0xFF
    zip_path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("files", "cause"),
    [
        ({"S2X_ABS.SAFE/manifest.safe": b"<x/>", "/etc/evil": b"x"}, "absolute path"),
        ({"S2X_BOMB.SAFE/manifest.safe": b"<x/>", "S2X_BOMB.SAFE/zeros.bin": b"\0" * 900_000}, "expansion ratio"),
        ({"S2X_BIG.SAFE/manifest.safe": b"<x/>", "S2X_BIG.SAFE/data.bin": bytes(range(256)) * 8_000}, "over the limit"),
    ],
)
def test_archives_breaking_unpack_limits_are_invalid(world: World, files: dict[str, bytes], cause: str) -> None:
    pid = next(iter(files)).split(".")[0]
    _publish_raw_zip(world.root, pid, files)
    harvest(world.conn, world.provider, world.spec)
    limited = world.settings.model_copy(update={"unpack_max_bytes": 1_000_000, "unpack_max_ratio": 100.0})
    out = world.process(pid, settings=limited)
    assert out.state is State.INVALID and cause in (out.error or "") and pid in str(repo.events_of(world.conn, pid))
    assert not world.work_of(pid).exists()
    assert not Path("/etc/evil").exists()


def test_corrupt_archive_with_a_matching_checksum_is_invalid(world: World) -> None:
    # the provider's own archive is broken (its checksum was computed on the broken bytes)
    src = next(iter(world.root.glob("products/*.zip")))
    pid = src.stem.replace("_N0510_", "_N0599_")
    broken = world.root / "products" / f"{pid}.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(broken, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename.replace(src.stem, pid), zin.read(info))
    _flip_member_byte(broken, "MTD_MSIL2A.xml")
    checksum, size = sha256_file(broken)
    add_entries(world.root, [ProviderEntry(
        id=pid, collection="S2_MSI_L2A", geometry=world.entries[0].geometry, bbox=world.entries[0].bbox,
        datetime=START, published=START, size=size, checksum=checksum, properties={},
    )])  # fmt: skip
    harvest(world.conn, world.provider, world.spec)
    out = world.process(pid)
    assert out.state is State.INVALID
    assert "corrupt archive" in (out.error or "") and ("CRC" in (out.error or "") or "Error -3" in (out.error or ""))


def test_search_answering_500_then_recovering(world: World) -> None:
    world.server.set_faults(Faults(fail_first_n=1))  # the first /search answers 503
    patient = world.settings.model_copy(update={"provider_search_retries": 1})
    found = harvest(world.conn, EodagProvider(patient), world.spec)
    assert len(found.new_ids) == 3
    statuses = [r["status"] for r in world.server.stats.to_dict()["recent"] if r["path"] == "/search"]
    assert statuses[:2] == [503, 200]


def test_cli_harvest_reports_each_product_and_continues_past_a_bad_one(world: World, stack: Stack) -> None:
    bad = world.entries[1].id
    world.server.set_faults(Faults(products={bad: "corrupt"}))
    env = {
        **stack.env, "INGEST_DATABASE_URL": world.dsn, "INGEST_S3_BUCKET": world.settings.s3_bucket,
        "INGEST_PROVIDER_URL": world.server.url, "INGEST_WORK_DIR": str(world.settings.work_dir),
        "INGEST_DOWNLOAD_BACKOFF_S": "0",
    }  # fmt: skip
    spec_dir = world.settings.work_dir.parent / "collections"
    spec_dir.mkdir()
    spec_dir.joinpath(f"{world.spec.id}.yaml").write_text(
        (ROOT / "collections" / "sentinel-2-l2a.yaml").read_text().replace("id: sentinel-2-l2a", f"id: {world.spec.id}")
    )
    env["INGEST_COLLECTIONS_DIR"] = str(spec_dir)
    done = run_cli("--text-logs", "harvest", world.spec.id, "--once", env=env)
    assert done.returncode == 75, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{world.spec.id}: 3 seen, 3 new"
    assert sorted(line.split()[0] for line in lines[1:]) == ["catalogued", "catalogued", "invalid"]
    assert any(line.startswith("invalid") and bad in line and "differs from the provider's" in line for line in lines)
