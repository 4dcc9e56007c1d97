"""Collection specs: one YAML file per collection under ``collections/``, read into typed models.

A spec says everything the daemon needs to know about a collection: its STAC metadata (what is
published), where products come from (EODAG collection and provider, search filters), how bands are
turned into COGs, when to harvest, what to keep (retention), when to audit it and how to follow the
provider's changes (upstream). Errors name the file and the field.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from ingest import asset_plan
from ingest.access.policy import AccessPolicy
from ingest.errors import CollectionSpecError
from ingest.yamlfile import YamlFileError, format_field, load_mapping

STAC_VERSION = "1.1.0"
_DURATION = re.compile(
    r"^\s*(?:P(?:(?P<pw>\d+)W)?(?:(?P<pd>\d+)D)?(?:T(?:(?P<ph>\d+)H)?(?:(?P<pm>\d+)M)?)?|(?P<n>\d+)\s*(?P<u>[smhdw]))\s*$",
    re.I,
)
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: Any) -> timedelta:
    """'90d', '12h', '2w', or ISO 8601 'P90D' / 'PT6H' into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not (m := _DURATION.match(value)) or value.strip().upper() == "P":
        raise ValueError(f"not a duration: {value!r} (use e.g. '90d', '12h', 'P90D')")
    if m.group("n"):
        return timedelta(**{_UNIT[m.group("u").lower()]: int(m.group("n"))})
    parts = {k: int(v) for k, v in m.groupdict().items() if v and k.startswith("p")}
    if not parts:
        raise ValueError(f"not a duration: {value!r}")
    return timedelta(
        weeks=parts.get("pw", 0), days=parts.get("pd", 0), hours=parts.get("ph", 0), minutes=parts.get("pm", 0)
    )


def iso_duration(value: timedelta) -> str:
    """ISO 8601 form of a duration: 'P90D', 'PT6H', 'P1DT12H' (seconds dropped below a minute)."""
    days, rest = value.days, value.seconds
    hours, minutes = rest // 3600, rest % 3600 // 60
    time = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "") if (days or time) else "PT0M"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
_CRON_FIELD = re.compile(r"^[\d*/,\-A-Za-z?]+$")


_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _days_of(part: str) -> set[int]:
    """Standard cron day-of-week numbers (0 or 7 = Sunday) of one comma-separated part."""
    base, _, step_text = part.partition("/")
    step = int(step_text) if step_text else 1
    if base == "*":
        lo, hi = 0, 6
    else:
        ends = [e.lower() for e in base.split("-")]
        if len(ends) > 2 or step < 1:
            raise ValueError(f"bad day-of-week {part!r}")
        nums = [_DAYS.index(e[:3]) if e[:3] in _DAYS else int(e) for e in ends]
        if not all(0 <= n <= 7 for n in nums):
            raise ValueError(f"day-of-week {part!r} out of 0-7")
        lo, hi = nums[0], nums[-1] if len(nums) == 2 else (6 if step_text else nums[0])
    return {d % 7 for d in range(lo, hi + 1, step)}


def apscheduler_crontab(expr: str) -> str:
    """The expression with its day-of-week spelled as names.

    APScheduler 3 numbers days from Monday = 0 (``0 3 * * 0`` would run on Mondays), and steps over
    ``*`` count from Monday too; cron, and every operator, mean Sunday = 0 (or 7). Names mean the same
    to both."""
    fields = expr.split()
    if len(fields) != 5 or fields[4] in ("*", "?"):
        return expr
    try:
        days = set().union(*(_days_of(part) for part in fields[4].split(",")))
    except (ValueError, IndexError):
        raise ValueError(f"not a day-of-week field: {fields[4]!r}") from None
    return " ".join([*fields[:4], ",".join(_DAYS[d] for d in sorted(days))])


def _check_cron(expr: str) -> str:
    fields = expr.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ValueError(f"not a 5-field cron expression: {expr!r}")
    from apscheduler.triggers.cron import CronTrigger

    CronTrigger.from_crontab(apscheduler_crontab(expr))  # raises ValueError with the reason
    return expr


Cron = Annotated[str, BeforeValidator(lambda v: _check_cron(str(v)))]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderContact(_Strict):
    name: str
    roles: list[Literal["licensor", "producer", "processor", "host"]] = Field(min_length=1)
    url: str | None = None
    description: str | None = None


class StacMetadata(_Strict):
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    license: str = Field(min_length=1, description="SPDX id, or 'other' with a license link")
    keywords: list[str] = []
    providers: list[ProviderContact] = Field(min_length=1)
    stac_extensions: list[str] = []
    summaries: dict[str, Any] = {}
    item_assets: dict[str, dict[str, Any]] = Field(min_length=1)
    links: list[dict[str, Any]] = []
    start: date = Field(description="start of the collection's temporal extent before any item is loaded")

    @field_validator("stac_extensions")
    @classmethod
    def _url_form(cls, v: list[str]) -> list[str]:
        # brokers re-validate with stac-pydantic, which wants URL-form extension ids
        for ext in v:
            if not ext.startswith("https://"):
                raise ValueError(f"extension must be a schema URL, got {ext!r}")
        return v

    @field_validator("item_assets")
    @classmethod
    def _asset_roles(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for key, asset in v.items():
            roles = asset.get("roles")
            if not isinstance(roles, list) or not roles:
                raise ValueError(f"item_assets.{key}: needs a non-empty 'roles' list")
            if "href" in asset:
                raise ValueError(f"item_assets.{key}: item_assets must not carry an href")
        return v


class Source(_Strict):
    eodag_collection: str = Field(min_length=1, description="EODAG collection id, e.g. S2_MSI_L2A")
    provider: str | None = Field(default=None, description="EODAG provider; settings.provider when empty")
    filters: dict[str, Any] = Field(default_factory=dict, description="extra search parameters")
    bbox: tuple[float, float, float, float] | None = None

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, v: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if v is not None:
            w, s, e, n = v
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s < n <= 90):
                raise ValueError("bbox must be [west, south, east, north] in degrees with south < north")
        return v


class Harvest(_Strict):
    enabled: bool = True
    cron: Cron | None = None
    interval: Duration | None = None
    overlap: Duration = Field(default=timedelta(days=2), description="re-read this much before the watermark")
    max_products: int = Field(default=500, ge=1, description="products taken per harvest run")

    @model_validator(mode="after")
    def _one_trigger(self) -> Harvest:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of 'cron' or 'interval'")
        return self


BandKind = Literal["reflectance", "backscatter", "atmosphere", "classification", "mask", "visual"]
Resampling = Literal["nearest", "average", "mode", "bilinear", "cubic", "gauss", "rms"]

# average keeps radiometry for continuous data; classes and masks must never be averaged
DEFAULT_RESAMPLING: dict[BandKind, Resampling] = {
    "reflectance": "average",
    "backscatter": "average",
    "atmosphere": "average",
    "classification": "nearest",
    "mask": "nearest",
    "visual": "average",
}


class CogProfile(_Strict):
    compress: Literal["deflate", "zstd", "lzw"] = "deflate"
    level: int | None = Field(default=None, ge=1, le=22)
    predictor: Literal[1, 2, 3] = 2
    blocksize: int = Field(default=512, ge=128, le=4096, multiple_of=16)
    overview_levels: int | None = Field(default=None, ge=0, le=12, description="None: until the image fits a block")
    resampling: dict[BandKind, Resampling] = Field(default_factory=lambda: dict(DEFAULT_RESAMPLING))
    bands: dict[str, BandKind] = Field(default_factory=dict, description="asset key -> band kind")
    default_kind: BandKind = "reflectance"

    @field_validator("resampling")
    @classmethod
    def _over_defaults(cls, v: dict[BandKind, Resampling]) -> dict[BandKind, Resampling]:
        # a file names the kinds it changes; the others keep theirs (masks must stay nearest)
        return {**DEFAULT_RESAMPLING, **v}

    def kind_of(self, asset_key: str) -> BandKind:
        return self.bands.get(asset_key, self.default_kind)

    def resampling_for(self, asset_key: str) -> Resampling:
        return self.resampling.get(self.kind_of(asset_key), "nearest")


class Retention(_Strict):
    enabled: bool = False
    max_age: Duration | None = None
    anchor: Literal["sensing", "ingestion"] = "sensing"
    area: dict[str, Any] | None = Field(default=None, description="GeoJSON geometry to keep")
    keep_latest: int = Field(default=0, ge=0)
    schedule: Cron = "30 3 * * *"

    @field_validator("area")
    @classmethod
    def _geojson(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        from shapely.geometry import shape

        if v.get("type") not in {"Polygon", "MultiPolygon"}:
            raise ValueError("area must be a GeoJSON Polygon or MultiPolygon")
        try:
            geom = shape(v)
        except Exception as exc:  # shapely raises several types for bad coordinates
            raise ValueError(f"area is not valid GeoJSON: {exc}") from None
        if not geom.is_valid or geom.is_empty:
            raise ValueError("area geometry is empty or invalid")
        return v

    def published(self) -> dict[str, Any] | None:
        """The policy as the collection document publishes it (``ingest:retention``), None when off."""
        if not self.enabled:
            return None
        doc: dict[str, Any] = {
            "anchor": "datetime" if self.anchor == "sensing" else "created",
            "keep_latest": self.keep_latest,
            "schedule": self.schedule,
        }
        if self.max_age is not None:
            doc["max_age"] = iso_duration(self.max_age)
        if self.area is not None:
            doc["area"] = self.area
        return doc

    @model_validator(mode="after")
    def _something_to_enforce(self) -> Retention:
        if self.enabled and self.max_age is None and self.area is None:
            raise ValueError("an enabled policy needs 'max_age' and/or 'area'")
        return self


class Audit(_Strict):
    """The scheduled ``ingest audit`` of the collection: on by default, daily, report only.

    On because what it finds (objects lost or changed behind the catalogue's back) shows nowhere else;
    after the shipped retention schedules, so it sees what retention left. The scheduler never repairs:
    re-queuing or deleting is an operator's call (``ingest audit --repair``)."""

    enabled: bool = True
    schedule: Cron = "15 4 * * *"
    deep: bool = False  # also compare every object's SHA-256 (one HEAD each)
    orphan_grace: Duration = Field(
        default=timedelta(hours=1), description="objects younger than this are not judged: an upload may be running"
    )


class Upstream(_Strict):
    """How the collection follows the provider's changes (``ingest reconcile``, ``ingest.upstream``).

    ``removed``: what becomes of a catalogued product the provider no longer lists. ``keep`` (the
    default) reports it and serves it still: a provider's listing can lose products by mistake, and
    the copy here may be the one left. ``retire`` removes it with ``--repair`` (or a scheduled repair)
    through retention's crash-safe path (its item from pgstac, its objects from S3, listed in
    ``/deleted-items``). ``reconcile``: a cron for a scheduled reconciliation of the last
    ``window_days`` days of sensing time, report only unless ``repair``. ``reprocessing``: what becomes of
    a catalogued product once a newer processing of the same acquisition is catalogued: ``replace`` (the
    default) retires the older one, ``keep`` keeps both (``ingest.upstream.reprocessing``)."""

    removed: Literal["keep", "retire"] = "keep"
    reprocessing: Literal["replace", "keep"] = "replace"
    reconcile: Cron | None = None
    window_days: int = Field(default=30, ge=1, le=3660, description="days of sensing time a scheduled run reads")
    repair: bool = False

    @model_validator(mode="after")
    def _repair_is_for_a_schedule(self) -> Upstream:
        if self.repair and self.reconcile is None:
            raise ValueError("'repair' is for the scheduled reconcile: set 'reconcile' (a cron) too")
        return self


class CollectionSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{1,62}$")
    stac: StacMetadata
    source: Source
    harvest: Harvest
    cog: CogProfile = CogProfile()
    retention: Retention = Retention()
    audit: Audit = Audit()
    upstream: Upstream = Upstream()
    access: AccessPolicy = AccessPolicy()  # who reads the assets (ingest.access); metadata stays public
    assets: dict[str, asset_plan.Action] = Field(
        default_factory=dict, description="asset key or glob -> cog | keep | drop (ingest.asset_plan)"
    )
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _plan_fits(self) -> CollectionSpec:
        wrong = asset_plan.problems(self.assets, self.stac.item_assets)
        if wrong:
            raise ValueError("assets: " + "; ".join(wrong))
        return self

    def asset_rule(self, key: str) -> asset_plan.Action | None:
        return asset_plan.rule_for(self.assets, key)

    def plan_warnings(self) -> list[str]:
        """What in the asset plan looks wrong without being fatal: rules that name no asset of the
        collection's ``item_assets``, band kinds set for assets the plan drops."""
        out = [
            f"assets.{rule}: names no asset of stac.item_assets (known: {', '.join(sorted(self.stac.item_assets))})"
            for rule in asset_plan.unmatched(self.assets, self.stac.item_assets)
        ]
        dropped = sorted(k for k in self.cog.bands if self.asset_rule(k) == "drop")
        if dropped:
            out.append(f"cog.bands: kinds for assets the plan drops: {', '.join(dropped)}")
        return out

    def stac_collection(self) -> dict[str, Any]:
        """The STAC Collection document published for this spec (extent is refreshed after loads)."""
        s = self.stac
        doc: dict[str, Any] = {
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "stac_extensions": list(s.stac_extensions),
            "id": self.id,
            "title": s.title,
            "description": s.description,
            "license": s.license,
            "keywords": list(s.keywords),
            "providers": [p.model_dump(exclude_none=True) for p in s.providers],
            "extent": {
                "spatial": {"bbox": [list(self.source.bbox or (-180.0, -90.0, 180.0, 90.0))]},
                "temporal": {"interval": [[f"{s.start.isoformat()}T00:00:00Z", None]]},
            },
            "summaries": dict(s.summaries),
            "item_assets": asset_plan.kept_assets(self.assets, s.item_assets),  # what items can hold
            "links": [
                *(dict(link) for link in s.links),
                # the policy as a document of its own: a link survives brokers that drop unknown fields
                # (ingest.api.policies); relative to the API root, served absolute
                {"rel": "ingest:retention", "href": f"collections/{self.id}/retention", "type": "application/json",
                 "title": "Retention policy"},
            ],
        }  # fmt: skip
        if (policy := self.retention.published()) is not None:
            doc["ingest:retention"] = policy
        doc["ingest:access"] = self.access.published()  # what the asset gateway enforces
        return doc


_SHOWN_ERRORS = 5  # a hostile file can hold thousands of wrong values; the line stays readable


def load_spec(path: Path) -> CollectionSpec:
    try:
        raw = load_mapping(path)  # bounded and strict: what is published comes from here
    except FileNotFoundError:
        raise CollectionSpecError(f"{path}: no such collection file") from None
    except YamlFileError as exc:
        raise CollectionSpecError(str(exc)) from None
    try:
        spec = CollectionSpec.model_validate({**raw, "path": path})
    except ValidationError as exc:
        errs = [f"{format_field(e['loc'])}: {e['msg']}" for e in exc.errors()[:_SHOWN_ERRORS]]
        more = f" (and {exc.error_count() - _SHOWN_ERRORS} more)" if exc.error_count() > _SHOWN_ERRORS else ""
        raise CollectionSpecError(f"{path}: " + "; ".join(errs) + more) from None
    if spec.id != path.stem:
        raise CollectionSpecError(f"{path}: id: '{spec.id}' must equal the file name '{path.stem}'")
    return spec


def load_all(directory: Path) -> dict[str, CollectionSpec]:
    if not directory.is_dir():
        raise CollectionSpecError(f"{directory}: collections directory not found")
    files = sorted(p for p in directory.glob("*.yaml"))
    if not files:
        raise CollectionSpecError(f"{directory}: no collection files (*.yaml)")
    specs: dict[str, CollectionSpec] = {}
    for f in files:
        spec = load_spec(f)
        specs[spec.id] = spec
    return specs


def get(directory: Path, collection_id: str) -> CollectionSpec:
    path = directory / f"{collection_id}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.yaml"))) or "none"
        raise CollectionSpecError(f"unknown collection '{collection_id}' (known: {known})")
    return load_spec(path)
