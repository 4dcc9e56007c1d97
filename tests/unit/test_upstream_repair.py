"""The repair's refusals that need no database: what ``removed: keep`` and an empty answer leave, and the
replacement policy's hook (the rest of the repair runs in tests/integration/test_reconcile.py)."""

from __future__ import annotations

from typing import Any, cast

from ingest import collections as col
from ingest.collections import Upstream
from ingest.settings import Settings
from ingest.upstream.compare import Differences, Replaced, Superseded
from ingest.upstream.repair import Repairer, replacement
from tests.conftest import ROOT

GONE = "S2A_MSIL1C_20260302T103021_N0511_R051_T31TCJ_20260302T120000"
NO_DATABASE = cast(Any, None)  # any query would fail: these paths must not need one


def repairer(removed: str) -> Repairer:
    spec = col.load_spec(ROOT / "collections" / "sentinel-2-l1c.yaml")
    spec = spec.model_copy(update={"upstream": Upstream(removed=removed)})  # type: ignore[arg-type]
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    return Repairer(NO_DATABASE, settings, NO_DATABASE, spec)


def test_removed_keep_reports_gone_products_and_touches_nothing() -> None:
    r = repairer("keep")
    r.chunk(Differences(gone=[GONE]), {}, day="2026-03-02")
    assert r.result.retired == [] and r.result.left == [
        ("gone", GONE, f"kept (upstream.removed: keep in {ROOT / 'collections' / 'sentinel-2-l1c.yaml'})")
    ]


def test_retire_refuses_a_day_the_provider_listed_nothing_for() -> None:
    r = repairer("retire")
    r.chunk(Differences(gone=[GONE]), {}, day="2026-03-02")
    assert r.result.left == [
        ("gone", GONE, "upstream listed nothing at all for 2026-03-02: not retired unless --force")
    ]


def test_the_replacement_policy_keeps_both_for_now() -> None:
    spec = col.load_spec(ROOT / "collections" / "sentinel-2-l1c.yaml")
    assert replacement(spec, Superseded("old", "new", None, old_listed=False)) == "keep"
    assert replacement(spec, Replaced("old", "new", old_listed=True)) == "keep"
