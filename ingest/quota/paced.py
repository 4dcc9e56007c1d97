"""A downloader that keeps to its provider's fleet-wide limits: what ``acquire`` is given.

Every transfer (a stream, or a download to disk when an archive cannot stream) holds one of the
provider's download slots for exactly as long as its bytes flow, and waits for the fleet's request
rate first. A 429/503 pauses the provider for the whole fleet and gives the product back to the
queue (``ProviderPaused``) instead of counting as a failed try of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ingest.errors import ProviderThrottled
from ingest.quota.limits import ProviderLimits, retry_after_s
from ingest.stages.acquire import StreamingDownloader
from ingest.stages.artifacts import ArchiveStream, ProviderProduct


class Paced:
    """``inner`` (an ``EodagProvider``) behind ``limits``; ``should_stop`` ends a wait when the process stops."""

    def __init__(
        self, inner: StreamingDownloader, limits: ProviderLimits, should_stop: Callable[[], bool] = lambda: False
    ) -> None:
        self.inner = inner
        self.limits = limits
        self.should_stop = should_stop

    def _refused(self, exc: ProviderThrottled, product: ProviderProduct) -> Exception:
        return self.limits.refused(exc.status, retry_after_s(exc.retry_after), exc.message, product_id=product.id)

    @contextmanager
    def stream(self, product: ProviderProduct) -> Iterator[ArchiveStream]:
        with self.limits.download_slot(product.id, should_stop=self.should_stop):
            self.limits.before_request(product_id=product.id, should_stop=self.should_stop)
            try:
                with self.inner.stream(product) as archive:
                    yield archive
            except ProviderThrottled as exc:
                raise self._refused(exc, product) from None
        self.limits.succeeded()

    def download(self, product: ProviderProduct, dest_dir: Path) -> Path:
        with self.limits.download_slot(product.id, should_stop=self.should_stop):
            self.limits.before_request(product_id=product.id, should_stop=self.should_stop)
            try:
                path: Path = self.inner.download(product, dest_dir)
            except ProviderThrottled as exc:
                raise self._refused(exc, product) from None
        self.limits.succeeded()
        return path
