"""A collection's asset plan: which assets of its items are converted to COGs, kept as they are, or
dropped. Pure.

In a collection file::

    assets:
      "*_20m": drop        # a glob (fnmatch, case-sensitive) ...
      aot: cog             # ... or an asset key
      product_metadata: keep

* ``cog``: converted to a Cloud-Optimized GeoTIFF (a raster: JPEG 2000 or GeoTIFF).
* ``keep``: uploaded as it is, with its media type, ``file:size`` and ``file:checksum``.
* ``drop``: not uploaded, not in the item, not in the collection's ``item_assets``.

The ``thumbnail`` is the pipeline's own (ingest.stages.preview, from the product's true-colour image or
quick-look): an exact ``thumbnail: drop`` turns it off; no other rule, glob or not, applies to it.

Precedence: an asset key named exactly wins; otherwise the first glob that matches, in the file's
order (a YAML mapping keeps it); a key no rule names keeps the default treatment (by role: data and
visual rasters converted, metadata and previews kept, anything else dropped). First match rather than
most specific because "most specific" between two globs has no clear meaning, and an operator reads
the file top to bottom.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any, Literal

Action = Literal["cog", "keep", "drop"]

DATA_ROLES = frozenset({"data", "visual"})
THUMBNAIL_KEY = "thumbnail"  # made by the pipeline (ingest.stages.preview): a plan can only drop it
_GLOB_CHARS = frozenset("*?[")
_RASTER_TYPES = ("image/tiff", "image/jp2")


def is_glob(pattern: str) -> bool:
    return bool(_GLOB_CHARS & set(pattern))


def rule_for(plan: Mapping[str, Action], key: str) -> Action | None:
    """The plan's action for ``key``, or None when no rule names it (the default treatment applies)."""
    if key in plan:
        return plan[key]
    for pattern, action in plan.items():
        if is_glob(pattern) and fnmatchcase(key, pattern):
            return action
    return None


def unmatched(plan: Mapping[str, Action], keys: Iterable[str]) -> list[str]:
    """The plan's rules that name no key of ``keys`` (a typo, or an asset no product has)."""
    known = list(keys)
    return [p for p in plan if not any(k == p or (is_glob(p) and fnmatchcase(k, p)) for k in known)]


def kept_assets(plan: Mapping[str, Action], item_assets: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``item_assets`` without what the plan drops: what the collection tells clients its items hold."""
    return {k: dict(v) for k, v in item_assets.items() if rule_for(plan, k) != "drop"}


def problems(plan: Mapping[str, Action], item_assets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Why ``plan`` cannot stand against the collection's ``item_assets`` (empty: it can)."""
    out = []
    data = [k for k, v in item_assets.items() if DATA_ROLES & set(v.get("roles") or [])]
    if data and not any(rule_for(plan, k) != "drop" for k in data):
        out.append(f"drops every data asset ({', '.join(sorted(data))}): an item would have no data")
    if (rule := plan.get(THUMBNAIL_KEY)) not in (None, "drop"):
        out.append(
            f"{THUMBNAIL_KEY}: made by the pipeline from the product's preview; '{rule}' does not apply, only 'drop'"
        )
    for key, asset in item_assets.items():
        media = str(asset.get("type") or "")
        if rule_for(plan, key) == "cog" and media and not media.startswith(_RASTER_TYPES):
            out.append(f"{key}: 'cog' for an asset of type {media}, which is not a raster")
    return out
