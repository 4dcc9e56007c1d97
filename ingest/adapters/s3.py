"""The object store, through boto3: the only module that imports boto3/botocore. Errors leave as IngestErrors.

Key layout (every key the daemon writes is built here, from validated segments)::

    {prefix}/{collection}/{item_id}/{name}

``name`` is chosen by the upload stage (``B04_10m.tif``, ``metadata/product_metadata.xml``). Every
segment must match ``[A-Za-z0-9][A-Za-z0-9._-]*``: no empty segment, no ``.``/``..``, no slash inside
a segment, so a hostile or empty item id can never widen a prefix (``delete_item_objects`` relies on
this), and keys need no URL quoting in ``public_href``.

Each object we write carries its sha256 in user metadata (``x-amz-meta-sha256``): a re-upload HEADs
the key first and skips the transfer when size, sha256 and content type already match. S3's ETag
is no substitute: it is not a content hash for multipart objects.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, cast
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import SecretStr

from ingest.errors import ConfigError, IngestError, StorageUnavailable
from ingest.settings import Settings, scrub
from ingest.stages.artifacts import StoredObject
from ingest.stages.checksums import to_multihash

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType

log = logging.getLogger(__name__)

MiB = 1024**2
SHA256_META = "sha256"  # user metadata key; S3 returns it lower-case as x-amz-meta-sha256
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DELETE_BATCH = 1000  # DeleteObjects limit per request
# S3 codes that mean "the configuration is wrong" (bucket, credentials, policy): retrying cannot help
_ACCESS_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AccountProblem",
}
_TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}


@dataclass(frozen=True)
class StoreOptions:
    """Transfer and network tuning. Defaults suit multi-hundred-MB COGs on a 2-core worker."""

    multipart_threshold: int = 64 * MiB
    multipart_chunksize: int = 32 * MiB  # S3 needs >= 5 MiB parts (except the last) and <= 10000 parts
    part_concurrency: int = 4  # parts of one file in flight; upload_product adds files in parallel
    max_pool_connections: int = 16  # >= upload workers x part_concurrency, or threads wait for a socket
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 30.0
    max_attempts: int = 3  # botocore "standard" retries, total attempts: an outage fails in seconds


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD tells about an object."""

    key: str
    size: int
    etag: str  # quoted, as S3 returns it; multipart objects end in "-<parts>"
    sha256: str | None  # our metadata; None for objects written by someone else
    content_type: str | None
    last_modified: datetime


@dataclass(frozen=True)
class ListedObject:
    """An entry of a listing: ListObjectsV2 gives key, size and time (no metadata, unlike a HEAD)."""

    key: str
    size: int
    last_modified: datetime


def check_segment(value: str, what: str) -> str:
    if not _SEGMENT.fullmatch(value):
        raise IngestError(f"refusing {what} {value!r} as an S3 key segment (allowed: letters, digits, '.', '_', '-')")
    return value


class ObjectStore:
    """One bucket (+ key prefix) of an S3-compatible store.

    The boto3 client is created on first use, once, under a lock (client creation is not thread-safe,
    the client itself is): one store may be shared by the upload threads and by several stages.
    """

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: SecretStr | None = None,
        secret_access_key: SecretStr | None = None,
        public_base_url: str | None = None,
        options: StoreOptions | None = None,
    ) -> None:
        if endpoint_url and urlsplit(endpoint_url).scheme not in ("http", "https"):
            raise ConfigError(f"INGEST_S3_ENDPOINT_URL must start with http:// or https://, got {endpoint_url!r}")
        segments = [s for s in prefix.strip("/").split("/") if s]
        bad = [s for s in segments if not _SEGMENT.fullmatch(s)]
        if bad:
            raise ConfigError(f"S3 key prefix {prefix!r}: segment {bad[0]!r} is not [A-Za-z0-9][A-Za-z0-9._-]*")
        self.bucket = bucket
        self.prefix = "/".join(segments)
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.region = region
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.options = options or StoreOptions()
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._client_obj: S3Client | None = None
        self._presigners: dict[str | None, S3Client] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, options: StoreOptions | None = None) -> ObjectStore:
        return cls(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            public_base_url=settings.public_base_url or None,
            options=options
            or StoreOptions(
                multipart_threshold=settings.s3_multipart_threshold_mib * MiB,
                multipart_chunksize=settings.s3_multipart_chunksize_mib * MiB,
                connect_timeout_s=settings.s3_connect_timeout_s,
                read_timeout_s=settings.s3_read_timeout_s,
                max_attempts=settings.s3_max_attempts,
            ),
        )

    # ------------------------------------------------------------------ layout

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    @property
    def where(self) -> str:
        """Endpoint and bucket for messages (never credentials)."""
        return f"{self.endpoint} bucket {self.bucket!r}"

    def collection_prefix(self, collection: str) -> str:
        parts = [self.prefix] if self.prefix else []
        return "/".join([*parts, check_segment(collection, "collection id")]) + "/"

    def item_prefix(self, collection: str, item_id: str) -> str:
        return self.collection_prefix(collection) + check_segment(item_id, "item id") + "/"

    def item_key(self, collection: str, item_id: str, name: str) -> str:
        """The key of ``name`` (may contain '/') under an item."""
        segments = [check_segment(s, "object name segment") for s in name.split("/")]
        return self.item_prefix(collection, item_id) + "/".join(segments)

    def href(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def public_href(self, key: str) -> str | None:
        return f"{self.public_base_url}/{key}" if self.public_base_url else None

    # ------------------------------------------------------------------ client and errors

    def _client(self) -> S3Client:
        if self._client_obj is not None:  # set once, never reset: no lock needed to read it
            return self._client_obj
        with self._lock:
            if self._client_obj is None:
                opts = self.options
                custom = self.endpoint_url is not None
                config = Config(
                    connect_timeout=opts.connect_timeout_s,
                    read_timeout=opts.read_timeout_s,
                    retries={"mode": "standard", "total_max_attempts": opts.max_attempts},
                    max_pool_connections=opts.max_pool_connections,
                    # path-style, as GDAL's AWS_VIRTUAL_HOSTING=FALSE: S3-compatibles rarely have wildcard DNS
                    s3={"addressing_style": "path"} if custom else None,
                    # boto3 >= 1.36 adds CRC trailers (aws-chunked) that MinIO/Ceph/Swift versions reject;
                    # only send checksums the operation requires there (TLS / SigV4 still cover the payload)
                    request_checksum_calculation="when_required" if custom else None,
                    response_checksum_validation="when_required" if custom else None,
                )
                self._client_obj = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    aws_access_key_id=_unwrap(self._access_key_id),
                    aws_secret_access_key=_unwrap(self._secret_access_key),
                    config=config,
                )
            return self._client_obj

    def presign(self, key: str, *, method: str, expires_s: int, endpoint_url: str | None = None) -> str:
        """A URL that lets its holder GET (or HEAD) ``key`` for ``expires_s``, signed for ``endpoint_url``
        (the endpoint as readers reach it; default this store's). Computed locally: no request is sent.
        A secret of its own until it expires: never to a log."""
        if method not in ("GET", "HEAD"):
            raise ValueError(f"cannot presign {method}")
        endpoint = endpoint_url or self.endpoint_url
        with self._lock:  # a client per endpoint, made once: making one costs more than signing
            client = self._presigners.get(endpoint)
            if client is None:
                client = self._presigners[endpoint] = boto3.session.Session().client(
                    "s3",
                    endpoint_url=endpoint,
                    region_name=self.region,
                    aws_access_key_id=_unwrap(self._access_key_id),
                    aws_secret_access_key=_unwrap(self._secret_access_key),
                    config=Config(signature_version="s3v4", s3={"addressing_style": "path"} if endpoint else None),
                )
        operation = "get_object" if method == "GET" else "head_object"
        url: str = client.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s, HttpMethod=method
        )
        return url

    def _transfer_config(self) -> TransferConfig:
        o = self.options
        return TransferConfig(
            multipart_threshold=o.multipart_threshold,
            multipart_chunksize=o.multipart_chunksize,
            max_concurrency=o.part_concurrency,
        )

    def _scrub(self, text: str) -> str:
        return scrub(text.strip(), self._secret_access_key, self._access_key_id)

    def _raise(self, what: str, exc: BaseException) -> NoReturn:
        """Translate a boto3/botocore exception into an IngestError naming endpoint and bucket."""
        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
            exc = exc.__context__  # boto3 wraps the ClientError and keeps only its text
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            self._raise_code(what, str(err.get("Code", "")), str(err.get("Message", "")), status)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            raise ConfigError(
                f"S3 {what} at {self.where}: no usable credentials; "
                "set INGEST_S3_ACCESS_KEY_ID and INGEST_S3_SECRET_ACCESS_KEY"
            ) from None
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            raise StorageUnavailable(
                f"S3 {what}: cannot reach {self.where} "
                f"(after {self.options.max_attempts} attempts): {self._scrub(str(exc))}"
            ) from None
        raise IngestError(f"S3 {what} at {self.where} failed: {self._scrub(str(exc))}") from None

    def _raise_code(self, what: str, code: str, message: str, status: int = 0) -> NoReturn:
        detail = self._scrub(f"{code}: {message}")
        if code == "NoSuchBucket":
            raise ConfigError(f"S3 {what}: bucket {self.bucket!r} does not exist at {self.endpoint}") from None
        if code == "InvalidBucketName":
            raise ConfigError(f"S3 {what}: {self.bucket!r} is not a valid bucket name at {self.endpoint}") from None
        if code in _ACCESS_CODES or status == 403:
            raise ConfigError(
                f"S3 {what}: access denied at {self.where} ({detail}); "
                "check INGEST_S3_ACCESS_KEY_ID / INGEST_S3_SECRET_ACCESS_KEY and the bucket policy"
            ) from None
        if code in _TRANSIENT_CODES or status >= 500:
            raise StorageUnavailable(f"S3 {what} at {self.where}: {detail}") from None
        raise IngestError(f"S3 {what} at {self.where} refused: {detail}") from None

    @contextmanager
    def _boundary(self, what: str) -> Iterator[None]:
        try:
            yield
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            self._raise(what, exc)

    # ------------------------------------------------------------------ operations

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size, ETag and our sha256 metadata; None when there is no such key."""
        try:
            r = self._client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            self._raise(f"HEAD {key}", exc)
        except BotoCoreError as exc:
            self._raise(f"HEAD {key}", exc)
        return ObjectInfo(
            key=key,
            size=r["ContentLength"],
            etag=r["ETag"],
            sha256=r.get("Metadata", {}).get(SHA256_META),
            content_type=r.get("ContentType"),
            last_modified=r["LastModified"],
        )

    def put_file(self, key: str, path: Path, *, media_type: str, sha256: str, force: bool = False) -> StoredObject:
        """Upload ``path`` to ``key`` unless an identical object is there (``force`` uploads anyway).

        Returns only once a HEAD has read the object back with the expected size and sha256: the
        item that points at it may be published right after.
        """
        size = path.stat().st_size
        if not force:
            have = self.head(key)
            if have is not None and (have.size, have.sha256, have.content_type) == (size, sha256, media_type):
                log.debug("s3 object unchanged, not re-sent: %s", key)
                return self._stored(key, size, sha256, media_type, uploaded=False)
        started = time.monotonic()
        with self._boundary(f"upload of {key}"):
            self._client().upload_file(
                str(path),
                self.bucket,
                key,
                ExtraArgs={"ContentType": media_type, "Metadata": {SHA256_META: sha256}},
                Config=self._transfer_config(),
            )
        # read back: proves the object is visible (also on eventually consistent S3-compatibles) and not
        # overwritten meanwhile by another writer
        got = self.head(key)
        if got is None or got.size != size or got.sha256 != sha256:
            found = "nothing" if got is None else f"{got.size} bytes, sha256 {got.sha256}"
            raise StorageUnavailable(
                f"S3 upload of {key} to {self.where}: read back {found}, expected {size} bytes, sha256 {sha256}"
            )
        log.info(
            "uploaded s3://%s/%s (%d bytes, %.1f s)",
            self.bucket,
            key,
            size,
            time.monotonic() - started,
            extra={"key": key, "bytes": size},
        )
        return self._stored(key, size, sha256, media_type, uploaded=True)

    def _stored(self, key: str, size: int, sha256: str, media_type: str, *, uploaded: bool) -> StoredObject:
        return StoredObject(
            key=key,
            href=self.href(key),
            public_href=self.public_href(key),
            size=size,
            checksum=to_multihash("sha256", sha256),
            media_type=media_type,
            uploaded=uploaded,
        )

    def list_keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix`` (a full key prefix, not relative to the store's), sorted."""
        keys: list[str] = []
        with self._boundary(f"listing of {prefix!r}"):
            for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(keys)

    def iter_objects(self, prefix: str) -> Iterator[ListedObject]:
        """Every object under ``prefix`` (a full key prefix) in the store's listing order (byte order on
        S3; SeaweedFS lists folder by folder), page by page: one request per 1,000 objects, only the
        current page held."""
        with self._boundary(f"listing of {prefix!r}"):
            for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for o in page.get("Contents", []):
                    yield ListedObject(o["Key"], o["Size"], o["LastModified"])

    def delete_item_objects(self, collection: str, item_id: str) -> int:
        """Delete every object under ``{prefix}/{collection}/{item_id}/``; returns how many.

        The segments are validated (no empty, ``..`` or ``/``), so the prefix can never reach beyond the
        item (nor into an item whose id merely starts with this one), and every listed key is checked to
        lie under that prefix before anything is deleted.
        """
        item_prefix = self.item_prefix(collection, item_id)
        keys = self.list_keys(item_prefix)
        # a listing never returns keys outside its Prefix on a correct store; this guards a faulty one
        outside = [k for k in keys if not k.startswith(item_prefix)]
        if outside:
            raise IngestError(f"refusing to delete {outside[0]!r}: outside {item_prefix!r} at {self.where}")
        self._delete(keys, item_prefix)
        if keys:
            log.info("deleted %d objects under s3://%s/%s", len(keys), self.bucket, item_prefix)
        return len(keys)

    def delete_keys(self, keys: Sequence[str], *, under: str) -> int:
        """Delete these keys, each of which must lie under ``under`` (a full key prefix ending in ``/``,
        one item's); returns how many."""
        outside = [k for k in keys if not under.endswith("/") or not k.startswith(under)]
        if outside:
            raise IngestError(f"refusing to delete {outside[0]!r}: outside {under!r} at {self.where}")
        self._delete(list(keys), under)
        return len(keys)

    def _delete(self, keys: list[str], under: str) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            with self._boundary(f"delete under {under}"):
                r = self._client().delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            errors = r.get("Errors", [])
            if errors:  # DeleteObjects answers 200 and reports failures per key
                first = errors[0]
                what = f"delete of {first.get('Key')} ({len(errors)} of {len(batch)} failed)"
                self._raise_code(what, first.get("Code", ""), first.get("Message", ""))

    def ensure_bucket(self) -> bool:
        """Create the bucket if it is missing; True when it was created."""
        client = self._client()
        try:
            client.head_bucket(Bucket=self.bucket)
            return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                self._raise("HEAD bucket", exc)
        except BotoCoreError as exc:
            self._raise("HEAD bucket", exc)
        with self._boundary("bucket creation"):
            if self.region == "us-east-1":  # the one region that refuses an explicit LocationConstraint
                client.create_bucket(Bucket=self.bucket)
            else:
                client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": cast("BucketLocationConstraintType", self.region)},
                )
        log.info("created bucket %s at %s", self.bucket, self.endpoint)
        return True

    def gdal_env(self) -> dict[str, str]:
        """GDAL configuration options for reading this store through ``/vsis3/{bucket}/{key}``.

        Holds the credentials: pass it to GDAL (a subprocess environment, ``gdal.SetConfigOption``, or
        ``rasterio.env.setenv(**opts)`` inside a ``rasterio.Env()``, whose constructor refuses AWS keys),
        never to a log.
        """
        env = {"AWS_REGION": self.region}
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            env["AWS_S3_ENDPOINT"] = parts.netloc + parts.path  # GDAL wants host:port without scheme
            env["AWS_HTTPS"] = "YES" if parts.scheme == "https" else "NO"
            env["AWS_VIRTUAL_HOSTING"] = "FALSE"
        if self._access_key_id is not None and self._secret_access_key is not None:
            env["AWS_ACCESS_KEY_ID"] = self._access_key_id.get_secret_value()
            env["AWS_SECRET_ACCESS_KEY"] = self._secret_access_key.get_secret_value()
        return env


def _unwrap(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
