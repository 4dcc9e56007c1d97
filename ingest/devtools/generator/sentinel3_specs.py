"""What the netCDF files of the Sentinel-3 product types hold: variables, dtypes, dimensions, packing.

Names, dimensions and dtypes follow the ESA product data format specifications (S3IPF PDS 004.1
OLCI L1, PDS 004.2 OLCI L2, PDS 005.1 SLSTR L1, PDS 005.2 SLSTR L2 land); the global attributes
come from the real products (``sentinel3_templates/*.json``). The main measurement, geolocation
and flag variables are complete; calibration and ancillary files hold their principal variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

Kind = Literal["field", "lat", "lon", "alt", "flags", "time", "column", "row", "detector"]

_OLCI_RADIANCE_UNITS = "mW.m-2.sr-1.nm-1"
# Radiance scale factors of the 21 OLCI bands as real L1 products carry them (uint16 packing).
_OLCI_SCALES = (
    0.0139465,
    0.0133873,
    0.0121481,
    0.0115198,
    0.0100953,
    0.0123538,
    0.00879161,
    0.00876539,
    0.0095103,
    0.00773378,
    0.00675523,
    0.0071996,
    0.00749684,
    0.0086512,
    0.00526779,
    0.00530267,
    0.00493004,
    0.00549962,
    0.00502847,
    0.00326378,
    0.00324118,
)
_OLCI_FLAGS = (
    "land coastline fresh_inland_water tidal_region bright straylight_risk invalid cosmetic duplicated"
    " sun-glint_risk dubious saturated@Oa01 saturated@Oa02 saturated@Oa03 saturated@Oa04 saturated@Oa05"
    " saturated@Oa06 saturated@Oa07 saturated@Oa08 saturated@Oa09 saturated@Oa10 saturated@Oa11"
    " saturated@Oa12 saturated@Oa13 saturated@Oa14 saturated@Oa15 saturated@Oa16 saturated@Oa17"
    " saturated@Oa18 saturated@Oa19 saturated@Oa20 saturated@Oa21"
)
_LQSF_FLAGS = (
    "INVALID WATER LAND CLOUD TURBID_ATM CLOUD_AMBIGUOUS CLOUD_MARGIN SNOW_ICE INLAND_WATER COASTLINE"
    " TIDAL COSMETIC SUSPECT HISOLZEN SATURATED MEGLINT HIGHGLINT WHITECAPS ADJAC WV_FAIL PAR_FAIL"
    " AC_FAIL OC4ME_FAIL OCNN_FAIL KDM_FAIL BPAC_ON WHITE_SCATT LOWRW HIGHRW OTCI_FAIL OTCI_BAD_IN"
    " OTCI_CLASS_CLSN"
)
_CONFIDENCE_FLAGS = (
    "coastline ocean tidal land inland_water unfilled spare spare cosmetic duplicate day twilight"
    " sun_glint snow summary_cloud summary_pointing"
)


@dataclass(frozen=True)
class Var:
    """One netCDF variable: stored dtype, dimensions, packing and how its values are made.

    ``lo``..``hi`` is the physical range of a ``field`` (a seeded smooth field plus noise);
    ``scale``/``offset`` pack it into ``dtype``; ``fill`` is the ``_FillValue``.
    """

    name: str
    dtype: str
    dims: tuple[str, ...]
    kind: Kind = "field"
    lo: float = 0.0
    hi: float = 1.0
    scale: float | None = None
    offset: float | None = None
    fill: float | None = None
    attrs: tuple[tuple[str, str], ...] = ()
    flag_count: int = 0


@dataclass(frozen=True)
class FileSpec:
    """One netCDF data object: its dimensions (names -> grid role) and variables."""

    dims: dict[str, str]
    variables: tuple[Var, ...] = field(default_factory=tuple)


def _lat(name: str, dims: tuple[str, ...]) -> Var:
    units = (("units", "degrees_north"), ("standard_name", "latitude"), ("long_name", "DEM corrected latitude"))
    return Var(name, "int32", dims, "lat", scale=1e-6, fill=-2147483648, attrs=units)


def _lon(name: str, dims: tuple[str, ...]) -> Var:
    units = (("units", "degrees_east"), ("standard_name", "longitude"), ("long_name", "DEM corrected longitude"))
    return Var(name, "int32", dims, "lon", scale=1e-6, fill=-2147483648, attrs=units)


def _alt(name: str, dims: tuple[str, ...]) -> Var:
    units = (("units", "m"), ("standard_name", "height_above_reference_ellipsoid"), ("long_name", "DEM altitude"))
    return Var(name, "int16", dims, "alt", scale=1.0, fill=-32768, attrs=units)


def _flags(name: str, dtype: str, dims: tuple[str, ...], meanings: str) -> Var:
    count = len(meanings.split())
    return Var(name, dtype, dims, "flags", attrs=(("flag_meanings", meanings),), flag_count=count)


# -- OLCI -------------------------------------------------------------------------------------

_RC = ("rows", "columns")
_TIE = ("tie_rows", "tie_columns")
_OLCI_GRID = {"rows": "rows", "columns": "columns"}


def _olci_radiance(band: int, dims: tuple[str, ...] = _RC) -> Var:
    name = f"Oa{band:02d}_radiance"
    return Var(
        name,
        "uint16",
        dims,
        lo=5.0,
        hi=min(400.0, 0.8 * 65534 * _OLCI_SCALES[band - 1]),
        scale=_OLCI_SCALES[band - 1],
        offset=0.0,
        fill=65535,
        attrs=(
            ("units", _OLCI_RADIANCE_UNITS),
            ("standard_name", "toa_upwelling_spectral_radiance"),
            ("long_name", f"TOA radiance for OLCI acquisition band oa{band:02d}"),
            ("coordinates", "time_stamp altitude latitude longitude"),
        ),
    )


_OLCI_COMMON: dict[str, FileSpec] = {
    "geo_coordinates.nc": FileSpec(
        _OLCI_GRID,
        (_alt("altitude", _RC), _lat("latitude", _RC), _lon("longitude", _RC)),
    ),
    "time_coordinates.nc": FileSpec(
        {"rows": "rows"},
        (
            Var(
                "time_stamp",
                "int64",
                ("rows",),
                "time",
                fill=-1,
                attrs=(("units", "microseconds since 2000-1-1 0:0:0"), ("long_name", "Elapsed time since 01 Jan 2000")),
            ),
        ),
    ),
    "instrument_data.nc": FileSpec(
        {"rows": "rows", "columns": "columns", "bands": "bands", "detectors": "detectors"},
        (
            Var("detector_index", "int16", _RC, "detector", fill=-1, attrs=(("long_name", "Detector index"),)),
            Var("frame_offset", "int8", _RC, lo=-2, hi=2, fill=-128, attrs=(("long_name", "Re-sampling offset"),)),
            Var("FWHM", "float32", ("bands", "detectors"), lo=2.4, hi=40.0, attrs=(("units", "nm"),)),
            Var("lambda0", "float32", ("bands", "detectors"), lo=400.0, hi=1020.0, attrs=(("units", "nm"),)),
            Var(
                "solar_flux", "float32", ("bands", "detectors"), lo=600.0, hi=1900.0, attrs=(("units", "mW.m-2.nm-1"),)
            ),
        ),
    ),
    "tie_geo_coordinates.nc": FileSpec(
        {"tie_rows": "rows", "tie_columns": "tie_columns"},
        (_lat("latitude", _TIE), _lon("longitude", _TIE)),
    ),
    "tie_geometries.nc": FileSpec(
        {"tie_rows": "rows", "tie_columns": "tie_columns"},
        (
            Var("OAA", "int32", _TIE, lo=-180.0, hi=180.0, scale=1e-6, fill=-2147483648, attrs=(("units", "degree"),)),
            Var("OZA", "uint32", _TIE, lo=0.0, hi=60.0, scale=1e-6, fill=4294967295, attrs=(("units", "degree"),)),
            Var("SAA", "int32", _TIE, lo=-180.0, hi=180.0, scale=1e-6, fill=-2147483648, attrs=(("units", "degree"),)),
            Var("SZA", "uint32", _TIE, lo=20.0, hi=80.0, scale=1e-6, fill=4294967295, attrs=(("units", "degree"),)),
        ),
    ),
    "tie_meteo.nc": FileSpec(
        {
            "tie_rows": "rows",
            "tie_columns": "tie_columns",
            "tie_pressure_levels": "pressure_levels",
            "wind_vectors": "wind_vectors",
        },
        (
            Var(
                "atmospheric_temperature_profile",
                "float32",
                ("tie_rows", "tie_columns", "tie_pressure_levels"),
                lo=200.0,
                hi=300.0,
                attrs=(("units", "K"),),
            ),
            Var(
                "horizontal_wind",
                "float32",
                ("tie_rows", "tie_columns", "wind_vectors"),
                lo=-20.0,
                hi=20.0,
                attrs=(("units", "m.s-1"),),
            ),
            Var("humidity", "float32", _TIE, lo=10.0, hi=100.0, attrs=(("units", "%"),)),
            Var("reference_pressure_level", "float32", ("tie_pressure_levels",), lo=1.0, hi=1000.0),
            Var("sea_level_pressure", "float32", _TIE, lo=980.0, hi=1040.0, attrs=(("units", "hPa"),)),
            Var("total_columnar_water_vapour", "float32", _TIE, lo=1.0, hi=60.0, attrs=(("units", "kg.m-2"),)),
            Var("total_ozone", "float32", _TIE, lo=0.005, hi=0.008, attrs=(("units", "kg.m-2"),)),
        ),
    ),
}

_EFR: dict[str, FileSpec] = {
    **{f"Oa{b:02d}_radiance.nc": FileSpec(_OLCI_GRID, (_olci_radiance(b),)) for b in range(1, 22)},
    **_OLCI_COMMON,
    "qualityFlags.nc": FileSpec(_OLCI_GRID, (_flags("quality_flags", "uint32", _RC, _OLCI_FLAGS),)),
    "removed_pixels.nc": FileSpec(
        {"rows": "rows", "removed_pixels": "removed_pixels"},
        (
            *(_olci_radiance(b, ("rows", "removed_pixels")) for b in range(1, 22)),
            _alt("altitude", ("rows", "removed_pixels")),
            Var("columns", "int16", ("rows", "removed_pixels"), "column", fill=-1),
            Var("detector_index", "int16", ("rows", "removed_pixels"), "detector", fill=-1),
            Var("frame_offset", "int8", ("rows", "removed_pixels"), lo=-2, hi=2, fill=-128),
            _lat("latitude", ("rows", "removed_pixels")),
            _lon("longitude", ("rows", "removed_pixels")),
            _flags("quality_flags", "uint32", ("rows", "removed_pixels"), _OLCI_FLAGS),
        ),
    ),
}


def _lfr_index(name: str, scale: float, hi: float, long_name: str) -> tuple[Var, Var]:
    return (
        Var(name, "uint8", _RC, lo=0.0, hi=hi, scale=scale, offset=0.0, fill=255, attrs=(("long_name", long_name),)),
        Var(f"{name}_err", "uint8", _RC, lo=0.0, hi=hi / 10, scale=scale, offset=0.0, fill=255),
    )


_LFR: dict[str, FileSpec] = {
    **_OLCI_COMMON,
    "ogvi.nc": FileSpec(_OLCI_GRID, _lfr_index("OGVI", 0.003937008, 0.95, "OLCI Global Vegetation Index")),
    "otci.nc": FileSpec(_OLCI_GRID, _lfr_index("OTCI", 0.02515, 6.0, "OLCI Terrestrial Chlorophyll Index")),
    "iwv.nc": FileSpec(_OLCI_GRID, _lfr_index("IWV", 0.3, 70.0, "Integrated water vapour column")),
    "rc_ogvi.nc": FileSpec(
        _OLCI_GRID,
        tuple(
            Var(
                n,
                "uint16",
                _RC,
                lo=0.0,
                hi=0.9 if not n.endswith("err") else 0.05,
                scale=1.5259e-05,
                offset=0.0,
                fill=65535,
            )
            for n in ("RC681", "RC681_err", "RC865", "RC865_err")
        ),
    ),
    "lqsf.nc": FileSpec(_OLCI_GRID, (_flags("LQSF", "uint32", _RC, _LQSF_FLAGS),)),
}

# -- SLSTR ------------------------------------------------------------------------------------

_STRIPE = {"a": "0.5 km", "b": "0.5 km", "f": "1 km", "i": "1 km", "t": "tie"}
_SLSTR_FILE = re.compile(r"^(?P<what>[A-Za-z0-9]+(?:_[A-Za-z]+)?)_(?P<grid>[abfit])(?P<view>[nox])\.nc$")


def _grid_dims(grid: str, view: str) -> dict[str, str]:
    """Dimension name -> grid role (``<resolution>:<view>:rows|columns|orphans``)."""
    res = _STRIPE[grid]
    role = f"{res}:{'oblique' if view == 'o' else 'nadir'}"
    dims = {"rows": f"{role}:rows", "columns": f"{role}:columns"}
    if res != "tie":
        dims["orphan_pixels"] = f"{role}:orphans"
    return dims


_EXCEPTIONS = (
    "ISP_absent pixel_absent not_decompressed no_signal saturation invalid_radiance no_parameters unfilled_pixel"
)


def _slstr_measurement(what: str, s: str) -> tuple[Var, ...]:
    channel, quantity = what.split("_", 1)
    rc, orphan = ("rows", "columns"), ("rows", "orphan_pixels")
    name = f"{channel}_{quantity}_{s}"
    if quantity == "radiance":
        hi, scale = (500.0, 0.01) if int(channel[1]) <= 3 else (50.0, 0.001)
        attrs = (
            ("units", _OLCI_RADIANCE_UNITS),
            ("standard_name", "toa_upwelling_spectral_radiance"),
            ("long_name", f"TOA radiance for channel {channel} ({_STRIPE[s[0]]} grid)"),
        )
        main = Var(name, "int16", rc, lo=1.0, hi=hi, scale=scale, offset=0.0, fill=-32768, attrs=attrs)
    else:
        attrs = (
            ("units", "K"),
            ("standard_name", "toa_brightness_temperature"),
            ("long_name", f"Gridded pixel brightness temperature for channel {channel}"),
        )
        main = Var(name, "int16", rc, lo=240.0, hi=320.0, scale=0.01, offset=283.73, fill=-32768, attrs=attrs)
    return (
        main,
        replace(main, name=f"{channel}_{quantity}_orphan_{s}", dims=orphan),
        _flags(f"{channel}_exception_{s}", "uint8", rc, _EXCEPTIONS),
        _flags(f"{channel}_exception_orphan_{s}", "uint8", orphan, _EXCEPTIONS),
    )


def _slstr_file(name: str) -> FileSpec:
    match = _SLSTR_FILE.match(name)
    if match is None:
        raise KeyError(name)
    what, grid, view = match["what"], match["grid"], match["view"]
    s = f"{grid}{view}"
    rc = ("rows", "columns")
    orphan = ("rows", "orphan_pixels")
    dims = _grid_dims(grid, view)
    if re.fullmatch(r"[SF]\d_(radiance|BT)", what):
        return FileSpec(dims, _slstr_measurement(what, s))
    if re.fullmatch(r"[SF]\d_quality", what):
        channel = what.split("_")[0]
        detectors = {"detectors": "detectors"}
        variables: tuple[Var, ...] = (
            Var(f"{channel}_cal_gain_{s}", "float32", ("detectors",), lo=0.9, hi=1.1),
            Var(f"{channel}_cal_offset_{s}", "float32", ("detectors",), lo=-0.1, hi=0.1),
        )
        if int(channel[1]) <= 6 and channel[0] == "S":
            variables += (
                Var(f"{channel}_solar_irradiance_{s}", "float32", ("detectors",), lo=200.0, hi=1900.0),
                Var(f"{channel}_radiance_uncert_{s}", "float32", ("detectors",), lo=0.01, hi=0.05),
            )
        else:
            variables += (Var(f"{channel}_T_uncert_{s}", "float32", ("detectors",), lo=0.02, hi=0.2),)
        return FileSpec(detectors, variables)
    if what == "flags":
        return FileSpec(
            dims,
            (
                _flags(f"confidence_{s}", "uint16", rc, _CONFIDENCE_FLAGS),
                _flags(f"pointing_{s}", "uint16", rc, "FlipMirrorAbsoluteError FlipMirrorIntegratedError"),
                _flags(f"bayes_{s}", "uint8", rc, "single_low single_moderate single_high single_spare"),
                _flags(f"cloud_{s}", "uint16", rc, "visible 1.37_threshold 1.6_small_histogram 1.6_large_histogram"),
                _flags(f"confidence_orphan_{s}", "uint16", orphan, _CONFIDENCE_FLAGS),
            ),
        )
    if what == "geodetic":
        if grid == "t":
            return FileSpec(dims, (_alt("elevation_tx", rc), _lat("latitude_tx", rc), _lon("longitude_tx", rc)))
        return FileSpec(
            dims,
            (
                _alt(f"elevation_{s}", rc),
                _alt(f"elevation_orphan_{s}", orphan),
                _lat(f"lat_orphan_{s}", orphan),
                _lat(f"latitude_{s}", rc),
                _lon(f"lon_orphan_{s}", orphan),
                _lon(f"longitude_{s}", rc),
            ),
        )
    if what == "cartesian":
        if grid == "t":
            return FileSpec(
                dims,
                tuple(
                    Var(f"{axis}_tx", "float64", rc, "column" if axis == "x" else "row", attrs=(("units", "m"),))
                    for axis in ("x", "y")
                ),
            )
        return FileSpec(
            dims,
            tuple(
                Var(
                    f"{axis}_{suffix}{s}",
                    "int32",
                    d,
                    "column" if axis == "x" else "row",
                    scale=1.0,
                    fill=-2147483648,
                    attrs=(("units", "m"),),
                )
                for axis in ("x", "y")
                for suffix, d in (("", rc), ("orphan_", orphan))
            ),
        )
    if what == "indices":
        return FileSpec(
            dims,
            (
                Var(f"detector_{s}", "uint8", rc, "detector", fill=255),
                Var(f"detector_orphan_{s}", "uint8", orphan, "detector", fill=255),
                Var(f"pixel_{s}", "uint16", rc, "column", fill=65535),
                Var(f"pixel_orphan_{s}", "uint16", orphan, "column", fill=65535),
                Var(f"scan_{s}", "uint16", rc, "row", fill=65535),
                Var(f"scan_orphan_{s}", "uint16", orphan, "row", fill=65535),
            ),
        )
    if what == "geometry":
        return FileSpec(
            dims,
            tuple(
                Var(f"{n}_{s}", "float32", rc, lo=lo, hi=hi, attrs=(("units", "degrees"),))
                for n, lo, hi in (
                    ("sat_azimuth", -180.0, 180.0),
                    ("sat_zenith", 0.0, 60.0),
                    ("solar_azimuth", -180.0, 180.0),
                    ("solar_zenith", 20.0, 160.0),
                )
            ),
        )
    if what == "met":
        return FileSpec(
            {**dims, "p_atmos": "pressure_levels"},
            (
                Var("cloud_fraction_tx", "float32", rc, lo=0.0, hi=1.0),
                Var("sea_surface_temperature_tx", "float32", rc, lo=270.0, hi=305.0, attrs=(("units", "K"),)),
                Var("skin_temperature_tx", "float32", rc, lo=250.0, hi=320.0, attrs=(("units", "K"),)),
                Var("surface_pressure_tx", "float32", rc, lo=98000.0, hi=104000.0, attrs=(("units", "Pa"),)),
                Var("temperature_profile_tx", "float32", ("p_atmos", "rows", "columns"), lo=200.0, hi=300.0),
                Var("total_column_ozone_tx", "float32", rc, lo=0.005, hi=0.008, attrs=(("units", "kg m**-2"),)),
                Var("total_column_water_vapour_tx", "float32", rc, lo=1.0, hi=60.0, attrs=(("units", "kg m**-2"),)),
                Var("u_wind_tx", "float32", rc, lo=-20.0, hi=20.0, attrs=(("units", "m s**-1"),)),
                Var("v_wind_tx", "float32", rc, lo=-20.0, hi=20.0, attrs=(("units", "m s**-1"),)),
            ),
        )
    if what == "time":
        res = f"{_STRIPE[grid]}:nadir"
        return FileSpec(
            {"rows": f"{res}:rows"},
            (
                Var(
                    f"time_stamp_{grid}",
                    "float64",
                    ("rows",),
                    "time",
                    attrs=(("units", "microseconds since 2000-01-01 00:00:00"),),
                ),
            ),
        )
    if what == "LST":
        return FileSpec(
            dims,
            (
                Var(
                    "LST",
                    "float32",
                    rc,
                    lo=250.0,
                    hi=330.0,
                    fill=-32768.0,
                    attrs=(
                        ("units", "K"),
                        ("standard_name", "surface_temperature"),
                        ("long_name", "Gridded Land Surface Temperature"),
                    ),
                ),
                Var("LST_uncertainty", "float32", rc, lo=0.5, hi=3.0, fill=-32768.0, attrs=(("units", "K"),)),
                Var("exception", "uint16", rc, "flags", flag_count=8),
                Var("LST_orphan", "float32", orphan, lo=250.0, hi=330.0, fill=-32768.0, attrs=(("units", "K"),)),
            ),
        )
    raise KeyError(name)


_LST_ANCILLARY = FileSpec(
    _grid_dims("i", "n"),
    (
        Var("NDVI", "float32", ("rows", "columns"), lo=-0.1, hi=0.9, fill=-32768.0),
        Var("TCWV", "float32", ("rows", "columns"), lo=1.0, hi=60.0, fill=-32768.0, attrs=(("units", "kg.m-2"),)),
        Var("biome", "uint8", ("rows", "columns"), lo=0.0, hi=26.0, fill=255),
        Var("fraction", "float32", ("rows", "columns"), lo=0.0, hi=1.0, fill=-32768.0),
        Var("validation", "uint16", ("rows", "columns"), "flags", flag_count=4),
    ),
)

_VISCAL = FileSpec(
    {"channels": "channels", "detectors": "detectors"},
    (
        Var("calibration_time", "float64", ("channels",), "time", attrs=(("units", "microseconds since 2000-01-01"),)),
        Var("slope", "float32", ("channels", "detectors"), lo=0.9, hi=1.1),
        Var("offset", "float32", ("channels", "detectors"), lo=-0.1, hi=0.1),
    ),
)


def file_spec(product_type: str, name: str) -> FileSpec:
    """The spec of data object ``name`` (file name) of ``product_type``; KeyError if unknown."""
    if product_type == "OL_1_EFR___":
        return _EFR[name]
    if product_type == "OL_2_LFR___":
        return _LFR[name]
    if name == "viscal.nc":
        return _VISCAL
    if name == "LST_ancillary_ds.nc":
        return _LST_ANCILLARY
    return _slstr_file(name)
