"""`ingest collections sync|validate` against the real pgstac, and the CLI's error contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import yaml

from tests.conftest import ROOT, Stack, free_port, run_cli


def test_sync_upserts_every_shipped_collection(stack: Stack, stack_env: dict[str, str]) -> None:
    shipped = sorted(p.stem for p in (ROOT / "collections").glob("*.yaml"))
    assert len(shipped) == 11  # S1 GRD, S2 L1C and L2A, eight Sentinel-3
    r = run_cli("collections", "sync", env=stack_env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [word for cid in shipped for word in ("synced", cid)]
    with psycopg.connect(stack.dsn) as conn:
        rows: dict[str, Any] = dict(conn.execute("SELECT id, content FROM pgstac.collections").fetchall())
    assert set(rows) >= set(shipped)
    efr = rows["sentinel-3-olci-l1-efr"]
    assert efr["item_assets"]["geo-coordinates"]["type"] == "application/x-netcdf"
    l2a = rows["sentinel-2-l2a"]
    assert l2a["title"] == "Sentinel-2 Level-2A"
    assert "scl" in l2a["item_assets"] and l2a["item_assets"]["scl"]["roles"]
    assert l2a["item_assets"]["red"]["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    # re-running changes nothing but the content (idempotent upsert)
    r = run_cli("collections", "sync", "sentinel-2-l2a", env=stack_env)
    assert r.returncode == 0 and r.stdout.strip() == "synced sentinel-2-l2a"
    with psycopg.connect(stack.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.collections WHERE id LIKE 'sentinel-%'").fetchone() == (
            len(shipped),
        )


def test_sync_of_an_unknown_id_fails_cleanly(stack_env: dict[str, str]) -> None:
    r = run_cli("collections", "sync", "sentinel-9", env=stack_env)
    assert r.returncode != 0
    assert r.stderr.strip().startswith("error: unknown collection(s): sentinel-9")


def test_validate_names_file_and_field(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "collections" / "sentinel-1-grd.yaml").read_text())
    doc["cog"]["blocksize"] = 500
    (tmp_path / "sentinel-1-grd.yaml").write_text(yaml.safe_dump(doc))
    r = run_cli("collections", "validate", env={"INGEST_COLLECTIONS_DIR": str(tmp_path)})
    assert r.returncode == 78
    line = r.stderr.strip()
    assert "sentinel-1-grd.yaml" in line and "cog.blocksize" in line and "multiple of 16" in line
    assert "Traceback" not in r.stderr


def test_validate_warns_of_an_asset_plan_rule_that_names_no_asset(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "collections" / "sentinel-2-l2a.yaml").read_text())
    doc["assets"]["wvp_30m"] = "drop"  # no product has it: a typo of an operator, not a broken file
    (tmp_path / "sentinel-2-l2a.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    r = run_cli("collections", "validate", env={"INGEST_COLLECTIONS_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    listed = len(doc["stac"]["item_assets"])
    dropped = sum(1 for k in doc["stac"]["item_assets"] if k.endswith(("_10m", "_20m", "_60m")))
    assert "ok     " in r.stdout and f"{listed - dropped} item assets, {dropped} dropped" in r.stdout
    path = tmp_path / "sentinel-2-l2a.yaml"
    assert f"warning: {path}: assets.wvp_30m: names no asset of stac.item_assets" in r.stderr


def test_database_down_gives_one_line_without_password() -> None:
    secret = "pa55-not-to-be-seen"
    env = {"INGEST_DATABASE_URL": f"postgresql://someone:{secret}@127.0.0.1:{free_port()}/ingest"}
    r = run_cli("collections", "sync", env=env)
    assert r.returncode == 69
    assert secret not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "127.0.0.1" in lines[0] and ("unreachable" in lines[0] or "refused" in lines[0])


def test_wrong_password_is_not_echoed(stack: Stack) -> None:
    secret = "wrong-pa55word"
    env = {"INGEST_DATABASE_URL": f"postgresql://ingest_admin:{secret}@127.0.0.1:{stack.pg_port}/ingest"}
    r = run_cli("collections", "sync", env=env)
    assert r.returncode == 69, r.stderr
    assert secret not in r.stderr and "password authentication failed" in r.stderr


def test_unknown_setting_and_debug_traceback(tmp_path: Path) -> None:
    r = run_cli("collections", "validate", env={"INGEST_COLECTIONS_DIR": "x"})
    assert r.returncode == 78 and "INGEST_COLECTIONS_DIR" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("--debug", "collections", "validate", env={"INGEST_COLLECTIONS_DIR": str(tmp_path)})
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_what_reads_the_collection_files_publishes_a_changed_policy(
    stack: Stack, migrated_db: str, tmp_path: Path
) -> None:
    """An operator edits a retention policy: `collections validate` warns that pgstac holds an older
    version, `ingest retain` publishes it before enforcing it, and nothing is stale after."""
    for f in (ROOT / "collections").glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text())
    env = {**stack.env, "INGEST_DATABASE_URL": migrated_db, "INGEST_COLLECTIONS_DIR": str(tmp_path)}
    assert run_cli("collections", "sync", env=env).returncode == 0
    r = run_cli("collections", "validate", env=env)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr

    path = tmp_path / "sentinel-2-l2a.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["retention"].update({"enabled": True, "max_age": "30d", "keep_latest": 3})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = run_cli("collections", "validate", env=env)
    assert r.returncode == 0
    assert "warning: sentinel-2-l2a: pgstac holds an older version" in r.stderr
    assert r.stderr.count("warning") == 1  # the two unchanged files are not named

    r = run_cli("retain", "sentinel-2-l2a", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    assert "published sentinel-2-l2a" in r.stderr
    with psycopg.connect(migrated_db) as conn:
        row = conn.execute("SELECT content FROM pgstac.collections WHERE id = 'sentinel-2-l2a'").fetchone()
    assert row is not None and row[0]["ingest:retention"]["keep_latest"] == 3
    r = run_cli("collections", "validate", env=env)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    again = run_cli("retain", "sentinel-2-l2a", "--yes", env=env)
    assert again.returncode == 0 and "published" not in again.stderr
