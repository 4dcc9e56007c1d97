"""ingest.stages.preview: which source, what size, transparent nodata, and bad sources giving a reason."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from ingest.stages import preview
from ingest.stages.artifacts import CogResult


def _item(**assets: tuple[Path, list[str]]) -> pystac.Item:
    item = pystac.Item("i", None, None, datetime(2026, 1, 1, tzinfo=UTC), {})
    for key, (path, roles) in assets.items():
        item.add_asset(key, pystac.Asset(str(path), roles=roles))
    return item


def _cog(key: str, path: Path, nodata: float | None = 0) -> CogResult:
    return CogResult(key, path, path.stat().st_size, "0" * 64, "uint8", nodata, (1, 1), None)


def _rgb(path: Path, rows: int, cols: int, driver: str = "GTiff") -> Path:
    data = np.full((3, rows, cols), 120, dtype=np.uint8)
    data[:, :, : cols // 4] = 0  # a nodata strip along the west edge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver=driver, width=cols, height=rows, count=3, dtype="uint8") as dst:
            dst.write(data)
    return path


@pytest.mark.parametrize(
    ("shape", "fitted"), [((10980, 10980), (512, 512)), ((1000, 2000), (256, 512)), ((30, 40), (30, 40))]
)
def test_fit_keeps_the_aspect_and_never_upscales(shape: tuple[int, int], fitted: tuple[int, int]) -> None:
    assert preview.fit(*shape) == fitted


def test_true_colour_comes_first_and_its_nodata_is_transparent(tmp_path: Path) -> None:
    tci, tci20 = _rgb(tmp_path / "tci.tif", 1200, 1000), _rgb(tmp_path / "tci20.tif", 600, 500)
    ql = _rgb(tmp_path / "ql.png", 20, 30, driver="PNG")
    item = _item(visual_20m=(tci20, ["visual"]), visual=(tci, ["visual"]), thumbnail=(ql, ["thumbnail"]))
    cogs = [_cog("visual_20m", tci20), _cog("visual", tci)]
    assert preview.thumbnail_source(item, cogs) == preview.ThumbnailSource(tci, "true colour", "visual", 0)
    thumb = preview.make_thumbnail(item, cogs, tmp_path / "out", "P")
    assert thumb.file is not None and thumb.file.media_type == "image/png" and thumb.shape == (512, 427)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(thumb.file.path) as png:
            assert png.driver == "PNG" and png.count == 4
            alpha = png.read(4)
    assert (alpha[:, :100] == 0).all() and (alpha[:, 110:] == 255).all()
    preview.attach(item, thumb)
    asset = item.assets["thumbnail"]
    assert (asset.href, asset.media_type, asset.roles) == (str(thumb.file.path), "image/png", ["thumbnail"])


def test_quick_look_without_true_colour_and_bad_sources_give_a_reason(tmp_path: Path) -> None:
    ql = _rgb(tmp_path / "quick-look.png", 20, 30, driver="PNG")
    item = _item(thumbnail=(ql, ["thumbnail"]), vv=(tmp_path / "vv.tif", ["data"]))
    good = preview.make_thumbnail(item, [], tmp_path / "a", "P")
    assert good.shape == (20, 30) and good.note == "from quick-look thumbnail"

    ql.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    bad = preview.make_thumbnail(item, [], tmp_path / "b", "P")
    assert bad.file is None and bad.note.startswith("quick-look quick-look.png cannot be read: ")
    assert not list((tmp_path / "b").iterdir())  # nothing half-written left
    preview.attach(item, bad)
    assert "thumbnail" not in item.assets  # stactools' link goes too

    ql.unlink()
    gone = preview.make_thumbnail(_item(thumbnail=(ql, ["thumbnail"])), [], tmp_path / "c", "P")
    assert gone.file is None and gone.note == "quick-look quick-look.png is not in the product"
    none = preview.make_thumbnail(_item(vv=(tmp_path / "vv.tif", ["data"])), [], tmp_path / "d", "P")
    assert none.file is None and none.note == "no true-colour image or quick-look in the product"
