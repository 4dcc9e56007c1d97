"""Sentinel-1 GRD SAFE products: geometry, backscatter model, annotations, previews and manifest."""

from __future__ import annotations

import hashlib
import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import rasterio
from pyproj import Transformer
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from ingest.devtools.generator.common import (
    _NOISE_ROWS,
    _STRIP_ROWS,
    _XSI,
    F32Array,
    FloatArray,
    _check_rows,
    _compact,
    _data_object_section,
    _DataObject,
    _Field,
    _iso_us,
    _product_dir,
    _sci,
    _sub,
    _subs,
    _utc,
    _write_xml,
)

# ---------------------------------------------------------------------------------------------
# Sentinel-1 GRD
# ---------------------------------------------------------------------------------------------

_S1_NSSDC = {"S1A": "2014-016A", "S1B": "2016-025A", "S1C": "2024-235A"}
_S1_POL_CODES = {("VV",): "SV", ("HH",): "SH", ("VV", "VH"): "DV", ("HH", "HV"): "DH"}
# mode -> (resolution class, pixel spacing m, incidence near/far deg, full swath width m, sub-swaths)
_S1_MODES = {
    "IW": ("H", 10.0, 30.5, 46.2, 251_000.0, 3),
    "EW": ("M", 40.0, 18.9, 47.0, 410_000.0, 5),
}
_S1_GROUND_SPEED = 6670.0  # m/s; line time = azimuth pixel spacing / ground speed
_S1_ALTITUDE = 693_000.0
_EARTH_RADIUS = 6_371_000.0
_LIGHT_SPEED = 299_792_458.0
_S1_INCLINATION = 98.18
_S1_ORBIT_SECONDS = 12 * 86400 / 175


def _s1_relative_orbit(satellite: str, absolute_orbit: int) -> int:
    # S1A: ((abs - 73) mod 175) + 1, S1B: ((abs - 27) mod 175) + 1 (ESA's formulas); S1C is
    # approximated with S1A's phasing.
    offset = 27 if satellite == "S1B" else 73
    return (absolute_orbit - offset) % 175 + 1


def _s1_cycle(satellite: str, absolute_orbit: int) -> int:
    if satellite == "S1B":
        return (absolute_orbit - 27) // 175 + 1
    return (absolute_orbit - 73) // 175 + 15  # S1A: matches e.g. orbit 39156 -> cycle 238


class _S1Model:
    """Pixel model of a GRD measurement: smooth backscatter x gamma speckle, zero borders."""

    def __init__(self, lines: int, samples: int, seed: int) -> None:
        self.lines, self.samples, self.seed = lines, samples, seed
        self.land = _Field.make(seed, 11, 6, 0.6, 4.0)
        self.texture = _Field.make(seed, 12, 8, 8.0, 40.0)
        rng = np.random.default_rng([seed, 7919, 13])
        self.border_phase = float(rng.uniform(0, 2 * math.pi))

    def sigma(self, u: FloatArray, v: FloatArray) -> F32Array:
        """Relative backscatter (mean 1) on the grid v (lines) x u (samples), both in 0..1."""
        land = self.land(u, v)
        water = np.clip((0.25 - land) / 0.05, 0.0, 1.0)
        sigma = (0.35 + 1.3 * land) * (0.85 + 0.3 * self.texture(u, v)) * (1.0 - 0.92 * water)
        sigma *= (1.25 - 0.5 * u)[np.newaxis, :].astype(np.float32)  # darker towards far range
        result: F32Array = sigma.astype(np.float32)
        return result

    def borders(self, r0: int, r1: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Width of the zero-filled near- and far-range borders for each line."""
        v = (np.arange(r0, r1) + 0.5) / self.lines
        wave = np.sin(2 * math.pi * 1.7 * v + self.border_phase)
        left = np.maximum(1, np.rint(self.samples * (0.006 + 0.003 * wave))).astype(np.int64)
        right = np.maximum(1, np.rint(self.samples * (0.004 - 0.002 * wave))).astype(np.int64)
        return left, right

    def pixels(self, polarisation: str, r0: int, r1: int) -> npt.NDArray[np.uint16]:
        u = (np.arange(self.samples) + 0.5) / self.samples
        v = (np.arange(r0, r1) + 0.5) / self.lines
        co_pol = polarisation in ("VV", "HH")
        mean_dn = 180.0 if co_pol else 62.0
        intensity = self.sigma(u, v) * np.float32(mean_dn**2)
        key = ("HH", "HV", "VV", "VH").index(polarisation)
        speckle = np.empty_like(intensity)
        for block in range(r0 // _NOISE_ROWS, (r1 - 1) // _NOISE_ROWS + 1):
            rng = np.random.default_rng([self.seed, 101, key, block])
            gamma = rng.standard_gamma(4.4, size=(_NOISE_ROWS, self.samples), dtype=np.float32)
            b0 = block * _NOISE_ROWS
            lo, hi = max(r0, b0), min(r1, b0 + _NOISE_ROWS)
            speckle[lo - r0 : hi - r0] = gamma[lo - b0 : hi - b0]
        intensity *= speckle / np.float32(4.4)
        out: npt.NDArray[np.uint16] = np.clip(np.rint(np.sqrt(intensity)), 1, 65535).astype(np.uint16)
        left, right = self.borders(r0, r1)
        cols = np.arange(self.samples)[np.newaxis, :]
        out[(cols < left[:, np.newaxis]) | (cols >= self.samples - right[:, np.newaxis])] = 0
        return out


def s1_measurement_pixels(
    polarisation: str,
    *,
    lines: int,
    samples: int,
    seed: int = 0,
    rows: tuple[int, int] | None = None,
) -> npt.NDArray[np.uint16]:
    """The uint16 amplitudes ``generate_s1_grd`` writes for ``polarisation`` (rows = lines)."""
    polarisation = polarisation.upper()
    if polarisation not in ("HH", "HV", "VV", "VH"):
        raise ValueError(f"unknown polarisation {polarisation!r}")
    r0, r1 = _check_rows(rows, lines)
    return _S1Model(lines, samples, seed).pixels(polarisation, r0, r1)


@dataclass(frozen=True)
class _S1Geometry:
    """Flat-earth (azimuthal equidistant) placement of the GRD image around its centre."""

    center: tuple[float, float]
    heading: float  # degrees clockwise from north
    lines: int
    samples: int
    spacing: float

    def lonlat(self, line: FloatArray, pixel: FloatArray) -> tuple[FloatArray, FloatArray]:
        along = (line - (self.lines - 1) / 2) * self.spacing
        across = (pixel - (self.samples - 1) / 2) * self.spacing
        h = math.radians(self.heading)
        east = along * math.sin(h) + across * math.cos(h)  # range looks right of the track
        north = along * math.cos(h) - across * math.sin(h)
        lon0, lat0 = self.center
        aeqd = f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m +no_defs"
        lon, lat = Transformer.from_crs(aeqd, 4326, always_xy=True).transform(east, north)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


@dataclass(frozen=True)
class _GridPoint:
    line: int
    pixel: int
    lon: float
    lat: float
    height: float
    incidence: float
    elevation: float
    slant_range_time: float
    azimuth_time: datetime


def _s1_grid_points(
    geometry: _S1Geometry,
    start: datetime,
    line_time: float,
    incidence: Callable[[FloatArray], FloatArray],
    land: _Field,
) -> list[_GridPoint]:
    """Geolocation grid as in real annotations: a line every ~3 s, ~20 pixel intervals."""
    line_step = max(1, math.ceil(3.0 / line_time))
    pixel_step = max(1, math.ceil(geometry.samples / 20))
    lines = sorted({*range(0, geometry.lines, line_step), geometry.lines - 1})
    pixels = sorted({*range(0, geometry.samples, pixel_step), geometry.samples - 1})
    line_grid, pixel_grid = np.meshgrid(np.array(lines, float), np.array(pixels, float), indexing="ij")
    lon, lat = geometry.lonlat(line_grid.ravel(), pixel_grid.ravel())
    inc = incidence(pixel_grid.ravel())
    elevation = np.degrees(np.arcsin(np.sin(np.radians(inc)) * _EARTH_RADIUS / (_EARTH_RADIUS + _S1_ALTITUDE)))
    central = np.radians(inc - elevation)
    slant = _EARTH_RADIUS * np.sin(central) / np.sin(np.radians(elevation))
    heights = 150.0 + 600.0 * land((pixel_grid.ravel() + 0.5) / geometry.samples, np.array([0.5]))[0].astype(np.float64)
    points = []
    for i, (line, pixel) in enumerate(zip(line_grid.ravel(), pixel_grid.ravel(), strict=True)):
        points.append(
            _GridPoint(
                line=int(line),
                pixel=int(pixel),
                lon=float(lon[i]),
                lat=float(lat[i]),
                height=float(heights[i]),
                incidence=float(inc[i]),
                elevation=float(elevation[i]),
                slant_range_time=float(2 * slant[i] / _LIGHT_SPEED),
                azimuth_time=start + timedelta(seconds=float(line) * line_time),
            )
        )
    return points


def _s1_ads_header(
    root: ET.Element,
    satellite: str,
    mode: str,
    polarisation: str,
    start: datetime,
    stop: datetime,
    absolute_orbit: int,
    datatake: int,
    image_number: int,
) -> None:
    header = _sub(root, "adsHeader")
    _subs(
        header,
        (
            ("missionId", satellite),
            ("productType", "GRD"),
            ("polarisation", polarisation),
            ("mode", mode),
            ("swath", mode),
            ("startTime", _iso_us(start, z=False)),
            ("stopTime", _iso_us(stop, z=False)),
            ("absoluteOrbitNumber", absolute_orbit),
            ("missionDataTakeId", datatake),
            ("imageNumber", f"{image_number:03d}"),
        ),
    )


def _s1_annotation_xml(
    header: Callable[[ET.Element], None],
    *,
    mode: str,
    orbit_direction: str,
    heading: float,
    start: datetime,
    stop: datetime,
    anx: datetime,
    lines: int,
    samples: int,
    spacing: float,
    line_time: float,
    points: Sequence[_GridPoint],
    pixels_mean: float,
    pixels_std: float,
) -> ET.Element:
    root = ET.Element("product")
    header(root)
    quality = _sub(root, "qualityInformation")
    _sub(quality, "productQualityIndex", _sci(0.0))
    _sub(quality, "qualityDataList", attrib={"count": "0"})
    general = _sub(root, "generalAnnotation")
    info = _sub(general, "productInformation")
    _subs(
        info,
        (
            ("pass", orbit_direction.capitalize()),
            ("timelinessCategory", "NRT-3h"),
            ("platformHeading", _sci(heading)),
            ("projection", "Ground Range"),
            ("rangeSamplingRate", _sci(6.434523812571428e07)),
            ("radarFrequency", _sci(5.405000454334350e09)),
            ("azimuthSteeringRate", _sci(1.590368784)),
        ),
    )
    for tag in (
        "downlinkInformationList",
        "orbitList",
        "attitudeList",
        "rawDataAnalysisList",
        "replicaInformationList",
        "noiseList",
        "terrainHeightList",
        "azimuthFmRateList",
    ):
        _sub(general, tag, attrib={"count": "0"})
    image = _sub(root, "imageAnnotation")
    image_info = _sub(image, "imageInformation")
    mid_incidence = points[len(points) // 2].incidence
    _subs(
        image_info,
        (
            ("productFirstLineUtcTime", _iso_us(start, z=False)),
            ("productLastLineUtcTime", _iso_us(stop, z=False)),
            ("ascendingNodeTime", _iso_us(anx, z=False)),
            ("anchorTime", _iso_us(start, z=False)),
            ("productComposition", "Slice"),
            ("sliceNumber", 1),
        ),
    )
    slices = _sub(image_info, "sliceList", attrib={"count": "1"})
    one = _sub(slices, "slice")
    _sub(one, "sliceNumber", 1)
    _sub(one, "sensingStartTime", _iso_us(start, z=False))
    _sub(one, "sensingStopTime", _iso_us(stop, z=False))
    _subs(
        image_info,
        (
            ("slantRangeTime", _sci(points[0].slant_range_time)),
            ("pixelValue", "Detected"),
            ("outputPixels", "16 bit Unsigned Integer"),
            ("rangePixelSpacing", f"{spacing:.6e}"),
            ("azimuthPixelSpacing", f"{spacing:.6e}"),
            ("azimuthTimeInterval", _sci(line_time)),
            ("azimuthFrequency", _sci(1.0 / line_time)),
            ("numberOfSamples", samples),
            ("numberOfLines", lines),
            ("zeroDopMinusAcqTime", _sci(0.0)),
            ("incidenceAngleMidSwath", _sci(mid_incidence)),
        ),
    )
    statistics = _sub(image_info, "imageStatistics")
    for tag, stat in (("outputDataMean", pixels_mean), ("outputDataStdDev", pixels_std)):
        node = _sub(statistics, tag)
        _sub(node, "re", f"{stat:.6e}")
        _sub(node, "im", f"{0.0:.6e}")
    processing = _sub(image, "processingInformation")
    _subs(
        processing,
        (
            ("thermalNoiseCorrectionPerformed", "false"),
            ("srgrConversionApplied", "true"),
            ("detectionPerformed", "true"),
            ("ellipsoidName", "WGS84"),
            ("ellipsoidSemiMajorAxis", _sci(6378137.0)),
            ("ellipsoidSemiMinorAxis", _sci(6356752.314245)),
            ("orbitSource", "Downlink"),
            ("attitudeSource", "Downlink"),
        ),
    )
    _sub(_sub(root, "dopplerCentroid"), "dcEstimateList", attrib={"count": "0"})
    _sub(_sub(root, "antennaPattern"), "antennaPatternList", attrib={"count": "0"})
    timing = _sub(root, "swathTiming")
    _sub(timing, "linesPerBurst", 0)
    _sub(timing, "samplesPerBurst", 0)
    _sub(timing, "burstList", attrib={"count": "0"})
    grid = _sub(_sub(root, "geolocationGrid"), "geolocationGridPointList", attrib={"count": str(len(points))})
    for p in points:
        node = _sub(grid, "geolocationGridPoint")
        _subs(
            node,
            (
                ("azimuthTime", _iso_us(p.azimuth_time, z=False)),
                ("slantRangeTime", _sci(p.slant_range_time)),
                ("line", p.line),
                ("pixel", p.pixel),
                ("latitude", _sci(p.lat)),
                ("longitude", _sci(p.lon)),
                ("height", _sci(p.height)),
                ("incidenceAngle", _sci(p.incidence)),
                ("elevationAngle", _sci(p.elevation)),
            ),
        )
    _sub(_sub(root, "coordinateConversion"), "coordinateConversionList", attrib={"count": "0"})
    _sub(_sub(root, "swathMerging"), "swathMergeList", attrib={"count": "0"})
    return root


def _s1_vector_lines(lines: int) -> list[int]:
    step = max(1, math.ceil(lines / 26))
    return sorted({*range(0, lines, step), lines - 1})


def _s1_vector_pixels(samples: int) -> list[int]:
    return sorted({*range(0, samples, 40), samples - 1})


def _values(values: Sequence[float] | FloatArray) -> str:
    return " ".join(f"{v:.6e}" for v in values)


def _s1_calibration_xml(
    header: Callable[[ET.Element], None],
    start: datetime,
    line_time: float,
    lines: int,
    samples: int,
    incidence: Callable[[FloatArray], FloatArray],
) -> ET.Element:
    root = ET.Element("calibration")
    header(root)
    _sub(_sub(root, "calibrationInformation"), "absoluteCalibrationConstant", f"{1.0:.6e}")
    vector_lines = _s1_vector_lines(lines)
    pixels = _s1_vector_pixels(samples)
    inc = np.radians(incidence(np.array(pixels, dtype=np.float64)))
    beta = np.full(len(pixels), 474.0)
    vectors = _sub(root, "calibrationVectorList", attrib={"count": str(len(vector_lines))})
    count = {"count": str(len(pixels))}
    for line in vector_lines:
        vector = _sub(vectors, "calibrationVector")
        _sub(vector, "azimuthTime", _iso_us(start + timedelta(seconds=line * line_time), z=False))
        _sub(vector, "line", line)
        _sub(vector, "pixel", " ".join(map(str, pixels)), count)
        _sub(vector, "sigmaNought", _values(beta / np.sqrt(np.sin(inc))), count)
        _sub(vector, "betaNought", _values(beta), count)
        _sub(vector, "gamma", _values(beta / np.sqrt(np.tan(inc))), count)
        _sub(vector, "dn", _values(beta), count)
    return root


def _s1_noise_xml(
    header: Callable[[ET.Element], None],
    start: datetime,
    line_time: float,
    lines: int,
    samples: int,
    mode: str,
    swaths: int,
) -> ET.Element:
    root = ET.Element("noise")
    header(root)
    vector_lines = _s1_vector_lines(lines)
    pixels = _s1_vector_pixels(samples)
    position = np.array(pixels, dtype=np.float64) / max(1, samples - 1)
    lut = 300.0 + 2100.0 * np.exp(-1.5 * position)
    ranges = _sub(root, "noiseRangeVectorList", attrib={"count": str(len(vector_lines))})
    for line in vector_lines:
        vector = _sub(ranges, "noiseRangeVector")
        _sub(vector, "azimuthTime", _iso_us(start + timedelta(seconds=line * line_time), z=False))
        _sub(vector, "line", line)
        _sub(vector, "pixel", " ".join(map(str, pixels)), {"count": str(len(pixels))})
        _sub(vector, "noiseRangeLut", _values(lut), {"count": str(len(pixels))})
    azimuths = _sub(root, "noiseAzimuthVectorList", attrib={"count": str(swaths)})
    az_lines = sorted({*range(0, lines, 10), lines - 1})
    bounds = np.linspace(0, samples, swaths + 1).round().astype(int)
    for k in range(swaths):
        vector = _sub(azimuths, "noiseAzimuthVector")
        _sub(vector, "swath", f"{mode}{k + 1}")
        _sub(vector, "firstAzimuthLine", 0)
        _sub(vector, "firstRangeSample", int(bounds[k]))
        _sub(vector, "lastAzimuthLine", lines - 1)
        _sub(vector, "lastRangeSample", max(int(bounds[k]), int(bounds[k + 1]) - 1))
        _sub(vector, "line", " ".join(map(str, az_lines)), {"count": str(len(az_lines))})
        values = 1.0 + 0.05 * np.sin(np.array(az_lines, dtype=np.float64) / 170.0 + k)
        _sub(vector, "noiseAzimuthLut", _values(values), {"count": str(len(az_lines))})
    return root


def _s1_manifest_xml(
    safe: Path,
    objects: Sequence[_DataObject],
    rep_ids: dict[str, str],
    *,
    satellite: str,
    mode: str,
    polarisations: Sequence[str],
    start: datetime,
    stop: datetime,
    anx: datetime,
    absolute_orbit: int,
    datatake: int,
    orbit_direction: str,
    processed: datetime,
    footprint: Sequence[tuple[float, float]],
) -> ET.Element:
    s1 = "http://www.esa.int/safe/sentinel-1.0"
    root = ET.Element(
        "xfdu:XFDU",
        {
            "xmlns:xsi": _XSI,
            "xmlns:gml": "http://www.opengis.net/gml",
            "xmlns:xfdu": "urn:ccsds:schema:xfdu:1",
            "xmlns:safe": s1,
            "xmlns:s1": f"{s1}/sentinel-1",
            "xmlns:s1sar": f"{s1}/sentinel-1/sar",
            "xmlns:s1sarl1": f"{s1}/sentinel-1/sar/level-1",
            "xmlns:s1sarl2": f"{s1}/sentinel-1/sar/level-2",
            "xmlns:gx": "http://www.google.com/kml/ext/2.2",
            "version": f"esa/safe/sentinel-1.0/sentinel-1/sar/level-1/grd/standard/{mode.lower()}"
            f"{'dp' if len(polarisations) == 2 else 'sp'}",
        },
    )
    package = _sub(
        _sub(root, "informationPackageMap"),
        "xfdu:contentUnit",
        attrib={
            "unitType": "SAFE Archive Information Package",
            "textInfo": f"Sentinel-1 {mode} Level-1 GRD Product",
            "dmdID": "acquisitionPeriod platform generalProductInformation measurementOrbitReference "
            "measurementFrameSet",
            "pdiID": "processing",
        },
    )
    unit_types = {
        "s1Level1MeasurementSchema": "Measurement Data Unit",
        "s1Level1QuickLookSchema": "Measurement Data Unit",
    }
    for obj in objects:
        rep = rep_ids[obj.object_id]
        unit = _sub(
            package, "xfdu:contentUnit", attrib={"unitType": unit_types.get(rep, "Metadata Unit"), "repID": rep}
        )
        _sub(unit, "dataObjectPointer", attrib={"dataObjectID": obj.object_id})

    metadata = _sub(root, "metadataSection")

    def wrapped(
        object_id: str, text_info: str, category: str = "DMD", classification: str = "DESCRIPTION"
    ) -> ET.Element:
        obj = _sub(
            metadata, "metadataObject", attrib={"ID": object_id, "classification": classification, "category": category}
        )
        wrap = _sub(
            obj, "metadataWrap", attrib={"mimeType": "text/xml", "vocabularyName": "SAFE", "textInfo": text_info}
        )
        return _sub(wrap, "xmlData")

    for obj in objects:
        if rep_ids[obj.object_id] in ("s1Level1ProductSchema", "s1Level1NoiseSchema", "s1Level1CalibrationSchema"):
            pointer = _sub(
                metadata,
                "metadataObject",
                attrib={"ID": f"{obj.object_id}Annotation", "classification": "DESCRIPTION", "category": "DMD"},
            )
            _sub(pointer, "dataObjectPointer", attrib={"dataObjectID": obj.object_id})
    processing = _sub(
        wrapped("processing", "Processing", "PDI", "PROVENANCE"),
        "safe:processing",
        attrib={
            "name": "GRD Post Processing",
            "start": _iso_us(processed - timedelta(minutes=11), z=False),
            "stop": _iso_us(processed, z=False),
        },
    )
    facility = _sub(
        processing,
        "safe:facility",
        attrib={
            "country": "Germany",
            "name": "Copernicus S1 Core Ground Segment - DPA",
            "organisation": "ESA",
            "site": "DLR-Oberpfaffenhofen",
        },
    )
    _sub(facility, "safe:software", attrib={"name": "Sentinel-1 IPF", "version": "003.71"})
    platform = _sub(wrapped("platform", "Platform Description"), "safe:platform")
    _sub(platform, "safe:nssdcIdentifier", _S1_NSSDC[satellite])
    _sub(platform, "safe:familyName", "SENTINEL-1")
    _sub(platform, "safe:number", satellite[-1])
    instrument = _sub(platform, "safe:instrument")
    _sub(instrument, "safe:familyName", "Synthetic Aperture Radar", {"abbreviation": "SAR"})
    instrument_mode = _sub(_sub(instrument, "safe:extension"), "s1sarl1:instrumentMode")
    _sub(instrument_mode, "s1sarl1:mode", mode)
    _sub(instrument_mode, "s1sarl1:swath", mode)
    orbit = _sub(wrapped("measurementOrbitReference", "Orbit Reference"), "safe:orbitReference")
    relative = _s1_relative_orbit(satellite, absolute_orbit)
    for kind in ("start", "stop"):
        _sub(orbit, "safe:orbitNumber", absolute_orbit, {"type": kind})
    for kind in ("start", "stop"):
        _sub(orbit, "safe:relativeOrbitNumber", relative, {"type": kind})
    _sub(orbit, "safe:cycleNumber", _s1_cycle(satellite, absolute_orbit))
    _sub(orbit, "safe:phaseIdentifier", 1)
    orbit_properties = _sub(_sub(orbit, "safe:extension"), "s1:orbitProperties")
    _sub(orbit_properties, "s1:pass", orbit_direction)
    _sub(orbit_properties, "s1:ascendingNodeTime", _iso_us(anx, z=False))
    general = _sub(
        wrapped("generalProductInformation", "General Product Information"), "s1sarl1:standAloneProductInformation"
    )
    _sub(general, "s1sarl1:instrumentConfigurationID", 7)
    _sub(general, "s1sarl1:missionDataTakeID", datatake)
    for pol in polarisations:
        _sub(general, "s1sarl1:transmitterReceiverPolarisation", pol)
    for tag, value in (
        ("productClass", "S"),
        ("productClassDescription", "SAR Standard L1 Product"),
        ("productComposition", "Slice"),
        ("productType", "GRD"),
        ("productTimelinessCategory", "NRT-3h"),
        ("sliceProductFlag", "true"),
        ("segmentStartTime", _iso_us(start, z=False)),
        ("sliceNumber", 1),
        ("totalSlices", 1),
    ):
        _sub(general, f"s1sarl1:{tag}", value)
    period = _sub(wrapped("acquisitionPeriod", "Acquisition Period"), "safe:acquisitionPeriod")
    _sub(period, "safe:startTime", _iso_us(start, z=False))
    _sub(period, "safe:stopTime", _iso_us(stop, z=False))
    anx_times = _sub(_sub(period, "safe:extension"), "s1:timeANX")
    _sub(anx_times, "s1:startTimeANX", f"{(start - anx).total_seconds() * 1000:.6e}")
    _sub(anx_times, "s1:stopTimeANX", f"{(stop - anx).total_seconds() * 1000:.6e}")
    frame = _sub(
        _sub(_sub(wrapped("measurementFrameSet", "Frame Set"), "safe:frameSet"), "safe:frame"),
        "safe:footPrint",
        attrib={"srsName": "http://www.opengis.net/gml/srs/epsg.xml#4326"},
    )
    _sub(frame, "gml:coordinates", " ".join(f"{lat:.6f},{lon:.6f}" for lon, lat in footprint))
    _data_object_section(root, safe, objects, "MD5", rep_ids)
    return root


def _quicklook(model: _S1Model, polarisations: Sequence[str]) -> npt.NDArray[np.uint8]:
    width, height = max(1, model.samples // 20), max(1, model.lines // 20)
    sigma = model.sigma((np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height)
    co = np.clip(np.sqrt(sigma) * 140.0, 0, 255)
    if len(polarisations) == 1:
        return np.stack([co] * 3).astype(np.uint8)
    cross = np.clip(np.sqrt(sigma) * 0.7 * 140.0, 0, 255)
    ratio = np.clip(cross / np.maximum(co, 1.0) * 255.0, 0, 255)
    return np.stack([co, cross, ratio]).astype(np.uint8)


def open_s1_measurement(
    path: Path, *, lines: int, samples: int, gcps: Sequence[GroundControlPoint]
) -> rasterio.io.DatasetWriter:
    """A GRD measurement as ESA writes it: uint16 GeoTIFF, strips of one line, GCPs in EPSG:4326."""
    return rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=samples,
        height=lines,
        count=1,
        dtype="uint16",
        gcps=gcps,
        crs=CRS.from_epsg(4326),
        tiled=False,
        blockysize=1,
        BIGTIFF="YES",
    )


def generate_s1_grd(
    out_dir: Path,
    *,
    sensing: datetime,
    satellite: str = "S1A",
    absolute_orbit: int = 39156,
    mode: str = "IW",
    polarisations: tuple[str, ...] = ("VV", "VH"),
    lines: int = 16676,
    samples: int = 26144,
    seed: int = 0,
    center: tuple[float, float] = (3.37, 45.49),
    orbit_direction: Literal["ASCENDING", "DESCENDING"] = "ASCENDING",
) -> Path:
    """Write a Sentinel-1 GRD SAFE product into ``out_dir`` and return its ``.SAFE`` path.

    ``lines`` x ``samples`` is the measurement size (the defaults are those of a real IW GRDH
    slice; tests pass small values); pixels are 10 m (IW, GRDH) or 40 m (EW, GRDM) so the
    footprint shrinks with the image. ``sensing`` (naive = UTC) is the first-line time; the stop
    time is sensing + lines x line time. ``center`` is the scene centre (lon, lat); the scene is
    rotated by the platform heading of the ``orbit_direction``, with range increasing to the right
    of the track. Measurements are uncompressed BigTIFF strips with GCPs (EPSG:4326, one per
    geolocation-grid point of the annotation) and no geotransform, like real GRD files; they
    are written in blocks of rows, so memory stays bounded at the full size (1.7 GB on disk).
    """
    if satellite not in _S1_NSSDC:
        raise ValueError(f"satellite must be one of {sorted(_S1_NSSDC)}, not {satellite!r}")
    mode = mode.upper()
    if mode not in _S1_MODES:
        raise ValueError(f"mode must be one of {sorted(_S1_MODES)}, not {mode!r}")
    pols = tuple(sorted((p.upper() for p in polarisations), key=lambda p: p[0] != p[1]))  # co-pol first
    if pols not in _S1_POL_CODES:
        raise ValueError(f"polarisations must be one of {sorted(_S1_POL_CODES)}, not {polarisations!r}")
    if lines < 2 or samples < 2:
        raise ValueError("lines and samples must be at least 2")
    if absolute_orbit < 1:
        raise ValueError("absolute_orbit must be positive")
    if orbit_direction not in ("ASCENDING", "DESCENDING"):
        raise ValueError(f"orbit_direction must be ASCENDING or DESCENDING, not {orbit_direction!r}")
    resolution_class, spacing, inc_near, inc_far, swath_width, swaths = _S1_MODES[mode]
    line_time = spacing / _S1_GROUND_SPEED
    start = _utc(sensing)
    stop = start + timedelta(microseconds=round(lines * line_time * 1e6))
    datatake = int(absolute_orbit * 7.735) & 0xFFFFFF
    code = _S1_POL_CODES[pols]
    stem = (
        f"{satellite}_{mode}_GRD{resolution_class}_1S{code}_{_compact(start)}_{_compact(stop)}_"
        f"{absolute_orbit:06d}_{datatake:06X}"
    )
    name = f"{stem}_{hashlib.md5(stem.encode()).hexdigest()[:4].upper()}.SAFE"  # noqa: S324 - an id, not security

    heading = -14.0 if orbit_direction == "ASCENDING" else -166.0
    geometry = _S1Geometry(center=center, heading=heading, lines=lines, samples=samples, spacing=spacing)
    # time since the ascending node from the argument of latitude of the scene centre
    arg_lat = math.degrees(
        math.asin(max(-1.0, min(1.0, math.sin(math.radians(center[1])) / math.sin(math.radians(_S1_INCLINATION)))))
    )
    arg_lat = (180.0 - arg_lat if orbit_direction == "DESCENDING" else arg_lat) % 360
    anx = start - timedelta(seconds=arg_lat / 360 * _S1_ORBIT_SECONDS)
    processed = stop + timedelta(hours=2, minutes=40, seconds=5)
    model = _S1Model(lines, samples, seed)

    def incidence(pixel: FloatArray) -> FloatArray:
        result: FloatArray = inc_near + (inc_far - inc_near) * np.clip(pixel * spacing / swath_width, 0.0, 1.0)
        return result

    points = _s1_grid_points(geometry, start, line_time, incidence, model.land)
    corner = {(p.line, p.pixel): (p.lon, p.lat) for p in points}
    last_line, last_pixel = lines - 1, samples - 1
    footprint = [corner[(last_line, 0)], corner[(last_line, last_pixel)], corner[(0, last_pixel)], corner[(0, 0)]]
    gcps = [
        GroundControlPoint(row=p.line, col=p.pixel, x=p.lon, y=p.lat, z=p.height, id=str(i + 1))
        for i, p in enumerate(points)
    ]

    objects: list[_DataObject] = []
    rep_ids: dict[str, str] = {}

    def add(object_id: str, rel: str, mime: str, rep: str) -> None:
        objects.append(_DataObject(object_id, rel, mime))
        rep_ids[object_id] = rep

    with _product_dir(Path(out_dir), name) as (safe, _scratch):
        for number, pol in enumerate(pols, start=1):
            file_stem = (
                f"{satellite.lower()}-{mode.lower()}-grd-{pol.lower()}-{start:%Y%m%dt%H%M%S}-"
                f"{stop:%Y%m%dt%H%M%S}-{absolute_orbit:06d}-{datatake:06x}-{number:03d}"
            )
            object_stem = file_stem.replace("-", "")

            def header(root: ET.Element, pol: str = pol, number: int = number) -> None:
                _s1_ads_header(root, satellite, mode, pol, start, stop, absolute_orbit, datatake, number)

            # measurement, in blocks of rows; statistics gathered on the way for the annotation
            measurement_rel = f"measurement/{file_stem}.tiff"
            (safe / "measurement").mkdir(exist_ok=True)
            total, total_sq, count = 0.0, 0.0, 0
            with open_s1_measurement(safe / measurement_rel, lines=lines, samples=samples, gcps=gcps) as dst:
                dst.update_tags(
                    TIFFTAG_IMAGEDESCRIPTION=f"Sentinel-1{satellite[-1]} {mode} GRD {resolution_class}R L1",
                    TIFFTAG_SOFTWARE="Sentinel-1 IPF 003.71",
                    TIFFTAG_DATETIME=f"{processed:%Y:%m:%d %H:%M:%S}",
                )
                for r0 in range(0, lines, _STRIP_ROWS):
                    r1 = min(lines, r0 + _STRIP_ROWS)
                    data = model.pixels(pol, r0, r1)
                    valid = data[data > 0].astype(np.float64)
                    total, total_sq, count = total + valid.sum(), total_sq + (valid**2).sum(), count + valid.size
                    dst.write(data, 1, window=Window(0, r0, samples, r1 - r0))
            mean = total / count if count else 0.0
            std = math.sqrt(max(0.0, total_sq / count - mean**2)) if count else 0.0

            annotation_rel = f"annotation/{file_stem}.xml"
            _write_xml(
                safe / annotation_rel,
                _s1_annotation_xml(
                    header,
                    mode=mode,
                    orbit_direction=orbit_direction,
                    heading=heading,
                    start=start,
                    stop=stop,
                    anx=anx,
                    lines=lines,
                    samples=samples,
                    spacing=spacing,
                    line_time=line_time,
                    points=points,
                    pixels_mean=mean,
                    pixels_std=std,
                ),
            )
            noise_rel = f"annotation/calibration/noise-{file_stem}.xml"
            _write_xml(safe / noise_rel, _s1_noise_xml(header, start, line_time, lines, samples, mode, swaths))
            calibration_rel = f"annotation/calibration/calibration-{file_stem}.xml"
            _write_xml(safe / calibration_rel, _s1_calibration_xml(header, start, line_time, lines, samples, incidence))
            add(f"product{object_stem}", annotation_rel, "text/xml", "s1Level1ProductSchema")
            add(f"noise{object_stem}", noise_rel, "text/xml", "s1Level1NoiseSchema")
            add(f"calibration{object_stem}", calibration_rel, "text/xml", "s1Level1CalibrationSchema")
            add(object_stem, measurement_rel, "application/octet-stream", "s1Level1MeasurementSchema")

        # previews
        (safe / "preview").mkdir()
        quad = " ".join(
            f"{lon:.6f},{lat:.6f}"
            for lon, lat in (
                corner[(0, 0)],
                corner[(0, last_pixel)],
                corner[(last_line, last_pixel)],
                corner[(last_line, 0)],
            )
        )
        kml = ET.Element(
            "kml", {"xmlns": "http://www.opengis.net/kml/2.2", "xmlns:gx": "http://www.google.com/kml/ext/2.2"}
        )
        folder = _sub(_sub(kml, "Document"), "Folder")
        _sub(folder, "name", "Sentinel-1 Map Overlay")
        overlay = _sub(folder, "GroundOverlay")
        _sub(overlay, "name", "Sentinel-1 Image Overlay")
        _sub(_sub(overlay, "Icon"), "href", "quick-look.png")
        _sub(_sub(overlay, "gx:LatLonQuad"), "coordinates", quad)
        _write_xml(safe / "preview" / "map-overlay.kml", kml)
        html = ET.Element("html")
        body = _sub(html, "body")
        _sub(body, "h1", name)
        _sub(body, "img", attrib={"src": "quick-look.png", "alt": "quick-look"})
        (safe / "preview" / "product-preview.html").write_bytes(ET.tostring(html, encoding="utf-8", method="html"))
        ql = _quicklook(model, pols)
        with warnings.catch_warnings():  # a quick-look PNG has no georeferencing, as in real products
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(
                safe / "preview" / "quick-look.png",
                "w",
                driver="PNG",
                width=ql.shape[2],
                height=ql.shape[1],
                count=3,
                dtype="uint8",
            ) as png:
                png.write(ql)
        add("mapoverlay", "preview/map-overlay.kml", "text/xml", "s1Level1MapOverlaySchema")
        add("productpreview", "preview/product-preview.html", "text/xml", "s1Level1ProductPreviewSchema")
        add("quicklook", "preview/quick-look.png", "application/octet-stream", "s1Level1QuickLookSchema")

        _write_xml(
            safe / "manifest.safe",
            _s1_manifest_xml(
                safe,
                objects,
                rep_ids,
                satellite=satellite,
                mode=mode,
                polarisations=pols,
                start=start,
                stop=stop,
                anx=anx,
                absolute_orbit=absolute_orbit,
                datatake=datatake,
                orbit_direction=orbit_direction,
                processed=processed,
                footprint=footprint,
            ),
        )
    return Path(out_dir) / name
