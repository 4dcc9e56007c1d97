"""`ingest collections sync|validate` against the real pgstac, and the CLI's error contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import yaml

from tests.conftest import ROOT, Stack, free_port, run_cli


def test_sync_upserts_three_collections(stack: Stack, stack_env: dict[str, str]) -> None:
    r = run_cli("collections", "sync", env=stack_env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("synced") == 3
    with psycopg.connect(stack.dsn) as conn:
        rows: dict[str, Any] = dict(conn.execute("SELECT id, content FROM pgstac.collections").fetchall())
    assert set(rows) >= {"sentinel-2-l2a", "sentinel-2-l1c", "sentinel-1-grd"}
    l2a = rows["sentinel-2-l2a"]
    assert l2a["title"] == "Sentinel-2 Level-2A"
    assert "scl" in l2a["item_assets"] and l2a["item_assets"]["scl"]["roles"]
    assert l2a["item_assets"]["red"]["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    # re-running changes nothing but the content (idempotent upsert)
    r = run_cli("collections", "sync", "sentinel-2-l2a", env=stack_env)
    assert r.returncode == 0 and r.stdout.strip() == "synced sentinel-2-l2a"
    with psycopg.connect(stack.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.collections WHERE id LIKE 'sentinel-%'").fetchone() == (3,)


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
