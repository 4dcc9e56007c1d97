"""What a caller of the provider limits may catch: the provider, not the product, stopped this run.

None of these is a product failure: the caller should give the product back to the queue, due again
after ``retry_in_s``, without counting an attempt (``ingest.retry`` would otherwise make a product
``failed`` after a few busy hours of the provider). They are retryable ``IngestError``s with exit
code 75 (EX_TEMPFAIL), so code that knows nothing of them still treats them as passing trouble.
"""

from __future__ import annotations

from datetime import datetime

from ingest.errors import IngestError


class ProviderLimited(IngestError):
    """The provider's fleet-wide limits kept this run from reaching the provider."""

    exit_code = 75  # EX_TEMPFAIL
    retryable = True

    def __init__(self, message: str, *, provider: str, retry_in_s: float, product_id: str | None = None) -> None:
        super().__init__(message, product_id=product_id)
        self.provider = provider
        self.retry_in_s = retry_in_s  # when trying again makes sense, from now


class ProviderPaused(ProviderLimited):
    """The provider is paused for the whole fleet (it answered 429/503) beyond what this caller may wait."""

    def __init__(
        self,
        provider: str,
        *,
        until: datetime,
        cause: str,
        status: int | None,
        remaining_s: float,
        product_id: str | None = None,
    ) -> None:
        what = f"HTTP {status}: {cause}" if status is not None else cause
        super().__init__(
            f"provider {provider} paused for {remaining_s:.0f} s more (until {until.isoformat(timespec='seconds')}) "
            f"after {what}",
            provider=provider,
            retry_in_s=remaining_s,
            product_id=product_id,
        )
        self.until = until  # the database server's clock
        self.cause = cause
        self.status = status
        self.remaining_s = remaining_s


class SlotWaitTimeout(ProviderLimited):
    """Every download slot of the provider stayed taken for as long as this caller may wait."""

    def __init__(
        self, provider: str, *, waited_s: float, limit: int, retry_in_s: float, product_id: str | None = None
    ) -> None:
        super().__init__(
            f"no download slot of provider {provider} free after {waited_s:.1f} s ({limit} in use across the fleet)",
            provider=provider,
            retry_in_s=retry_in_s,
            product_id=product_id,
        )
        self.waited_s = waited_s
        self.limit = limit


class WaitCancelled(ProviderLimited):
    """The process is stopping (``should_stop()`` said so) while this caller waited for the provider."""

    def __init__(self, provider: str, *, waited_s: float, product_id: str | None = None) -> None:
        super().__init__(
            f"stopped waiting for provider {provider} after {waited_s:.1f} s: the process is stopping",
            provider=provider,
            retry_in_s=0.0,
            product_id=product_id,
        )
        self.waited_s = waited_s
