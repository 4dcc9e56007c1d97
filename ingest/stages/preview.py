"""The ``thumbnail`` asset of every item: a small PNG a browser shows as it is (STAC Browser, a search
result list), made while converting.

Source, in this order (``thumbnail_source``, pure):

* **true colour**: the converted COG of the product's ``visual`` asset (S2 TCI; ``visual`` before
  ``visual_20m``/``visual_60m``). Read through its overviews (rasterio ``out_shape``), so a 10980 px
  TCI costs the decoding of its smallest overview, not of the image. Its nodata (S2: DN 0 in all three
  bands, the product's declaration the COG carries) becomes transparent (PNG alpha).
* **quick-look**: the product's own ``preview/quick-look.png`` (S1 GRD), downscaled. ESA renders it
  from the measurements already (VV/VH colour composite, a few hundred pixels); a composite of our own
  would be a second rendering of the same thing to maintain, so a GRD without a usable quick-look gets
  no thumbnail.

Output: PNG (lossless, and alpha for nodata, which JPEG lacks; size in benchmarks/thumbnails.py), at most
``MAX_SIZE`` px on its long side, never upscaled. A product with neither source, or with a source
that cannot be decoded (a garbage quick-look), gets no thumbnail: ``make_thumbnail`` returns the
reason and the pipeline records it; a preview never makes a product invalid.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pystac
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from ingest.asset_plan import THUMBNAIL_KEY
from ingest.stages.artifacts import CogResult, MetadataFile

log = logging.getLogger(__name__)

ASSET_KEY = THUMBNAIL_KEY
MEDIA_TYPE = "image/png"
TITLE = "Thumbnail"
MAX_SIZE = 512  # px on the long side: STAC Browser shows thumbnails up to ~300 px, twice that for HiDPI
_VISUAL_ORDER = ("visual", "visual_10m", "visual_20m", "visual_60m")
_GDAL_ENV = {"GDAL_PAM_ENABLED": "NO", "GDAL_CACHEMAX": 64}  # no .aux.xml side-cars beside the PNG


@dataclass(frozen=True)
class ThumbnailSource:
    path: Path
    kind: str  # "true colour" / "quick-look", for messages and the event details
    asset_key: str  # the item asset it comes from
    nodata: float | None  # a pixel whose bands all equal this is transparent


@dataclass(frozen=True)
class Thumbnail:
    """What ``make_thumbnail`` did: ``file`` to upload, or None and ``note`` says why."""

    file: MetadataFile | None
    note: str
    source: ThumbnailSource | None
    shape: tuple[int, int] | None = None  # rows, cols
    seconds: float = 0.0


def thumbnail_source(item: pystac.Item, cogs: Sequence[CogResult]) -> ThumbnailSource | None:
    """Pure. The true-colour COG, else the product's quick-look, else None."""
    converted = {c.asset_key: c for c in cogs}
    visual = [k for k, a in item.assets.items() if "visual" in (a.roles or []) and k in converted]
    if visual:
        key = min(visual, key=lambda k: (_VISUAL_ORDER.index(k) if k in _VISUAL_ORDER else len(_VISUAL_ORDER), k))
        cog = converted[key]
        return ThumbnailSource(cog.path, "true colour", key, cog.nodata)
    for key, asset in item.assets.items():
        if "thumbnail" in (asset.roles or []) and asset.href.lower().endswith(".png"):
            return ThumbnailSource(Path(asset.href), "quick-look", key, None)
    return None


def fit(rows: int, cols: int, max_size: int = MAX_SIZE) -> tuple[int, int]:
    """Pure. The shape that fits ``max_size`` on the long side, aspect kept, never upscaled."""
    scale = min(1.0, max_size / max(rows, cols, 1))
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def make_thumbnail(item: pystac.Item, cogs: Sequence[CogResult], dest_dir: Path, name: str) -> Thumbnail:
    """Write ``dest_dir/thumbnail.png``; never raises for the product's data (``name``: for messages)."""
    started = time.perf_counter()
    source = thumbnail_source(item, cogs)
    if source is None:
        return Thumbnail(None, "no true-colour image or quick-look in the product", None)
    if not source.path.is_file():
        return Thumbnail(None, f"{source.kind} {source.path.name} is not in the product", source)
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / f"{ASSET_KEY}.png"
    try:
        rgba = _read(source)
        _write_png(out, rgba)
    except Exception as exc:  # GDAL raises CPLE_* types too: a preview never fails a product
        out.unlink(missing_ok=True)
        cause = " ".join(str(exc).replace(str(source.path), source.path.name).split())[:200]
        return Thumbnail(None, f"{source.kind} {source.path.name} cannot be read: {cause}", source)
    seconds = time.perf_counter() - started
    shape = (int(rgba.shape[1]), int(rgba.shape[2]))
    log.debug("%s: thumbnail %dx%d from %s in %.3f s", name, shape[1], shape[0], source.asset_key, seconds)
    note = f"from {source.kind} {source.asset_key}"
    return Thumbnail(MetadataFile(ASSET_KEY, out, MEDIA_TYPE), note, source, shape, seconds)


def _read(source: ThumbnailSource) -> npt.NDArray[np.uint8]:
    """RGBA uint8 pixels of the thumbnail, decoded from the source's overviews."""
    with warnings.catch_warnings(), rasterio.Env(**_GDAL_ENV):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a quick-look PNG has no georeferencing
        with rasterio.open(source.path) as src:
            if src.count not in (1, 3, 4) or src.dtypes[0] != "uint8":
                raise ValueError(f"{src.count} band(s) of {src.dtypes[0]}, not 8-bit grey, RGB or RGBA")
            rows, cols = fit(src.height, src.width)
            # average for colours; the nodata test below runs on the averaged pixels, so an edge pixel
            # half in nodata shows darkened rather than vanishing
            data = src.read(out_shape=(src.count, rows, cols), resampling=Resampling.average)
    if data.shape[0] == 4:
        return np.asarray(data, dtype=np.uint8)
    rgb = np.repeat(data, 3, axis=0) if data.shape[0] == 1 else data
    alpha = np.full((1, rows, cols), 255, dtype=np.uint8)
    if source.nodata is not None:
        alpha[0][np.all(rgb == source.nodata, axis=0)] = 0
    return np.concatenate([rgb, alpha]).astype(np.uint8)


def _write_png(path: Path, rgba: npt.NDArray[np.uint8]) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    with warnings.catch_warnings(), rasterio.Env(**_GDAL_ENV):
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            tmp, "w", driver="PNG", width=rgba.shape[2], height=rgba.shape[1], count=4, dtype="uint8", ZLEVEL=6
        ) as png:
            png.write(rgba)
    tmp.replace(path)


def attach(item: pystac.Item, thumbnail: Thumbnail) -> None:
    """The item's ``thumbnail`` asset becomes ours (local href until upload), or goes when there is none."""
    item.assets.pop(ASSET_KEY, None)  # stactools' (S1: the quick-look as it is), present or not
    if thumbnail.file is not None:
        item.add_asset(
            ASSET_KEY,
            pystac.Asset(href=str(thumbnail.file.path), media_type=MEDIA_TYPE, title=TITLE, roles=["thumbnail"]),
        )
