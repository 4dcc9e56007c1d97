"""The IngestError tree.

Every error the daemon raises on purpose is an IngestError: it carries a one-line message meant for
an operator, whether trying again later can help (``retryable``), and the process exit code the CLI
uses (sysexits values, so shell scripts and supervisors can tell config errors from outages).
Library exceptions are translated into these at the adapter boundary.
"""

from __future__ import annotations


class IngestError(Exception):
    exit_code = 70  # EX_SOFTWARE
    retryable = False

    def __init__(self, message: str, *, product_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.product_id = product_id

    def __str__(self) -> str:
        if self.product_id:
            return f"{self.product_id}: {self.message}"
        return self.message


def first_line(exc: BaseException) -> str:
    """An error as one line for a log or a report: an IngestError's own text, anything else with its type."""
    text = str(exc) if isinstance(exc, IngestError) else f"{type(exc).__name__}: {exc}"
    return (text.strip().splitlines() or [type(exc).__name__])[0]


class ConfigError(IngestError):
    """A setting or a collection file is wrong: fixing the configuration is the only cure."""

    exit_code = 78  # EX_CONFIG


class CollectionSpecError(ConfigError):
    """A collection file is missing or malformed; the message names the file and the field."""


class UnavailableError(IngestError):
    """A service we depend on does not answer; the same call may work later."""

    exit_code = 69  # EX_UNAVAILABLE
    retryable = True


class DatabaseUnavailable(UnavailableError):
    pass


class StorageUnavailable(UnavailableError):
    pass


class ProviderUnavailable(UnavailableError):
    pass


class UpstreamUnavailable(UnavailableError):
    """A federation catalogue we register with does not answer, or refuses our credentials."""


class StackError(IngestError):
    """The local development stack could not be started, stopped or inspected."""

    exit_code = 71  # EX_OSERR


class InvalidProduct(IngestError):
    """The product itself is bad (corrupt archive, checksum mismatch, hostile paths, bad metadata).

    Terminal: trying again downloads the same bad bytes.
    """

    exit_code = 65  # EX_DATAERR


class ProductGone(IngestError):
    """The provider no longer serves the product (HTTP 404/410): not retried on its own, an operator may."""

    exit_code = 69  # EX_UNAVAILABLE


class TransientProductError(IngestError):
    """A product step failed for a reason that may pass (truncated download, 5xx, timeout)."""

    exit_code = 75  # EX_TEMPFAIL
    retryable = True


class ProductOffline(IngestError):
    """The provider has the product in its long-term archive only (OData ``Online: false``): not a
    failure; looked at again later (state ``offline``), without counting an attempt."""

    exit_code = 75  # EX_TEMPFAIL


class SearchIncomplete(IngestError):
    """The provider ended a search before every match was read (OData stops paging at $skip 10,000):
    what was read is recorded, but nothing may count the window as done."""

    exit_code = 65  # EX_DATAERR: the request (its window) is too large for the provider


class ProviderThrottled(TransientProductError):
    """The provider answered 429 or 503 (too many requests, sessions or downloads; or down for a while).

    The provider's limits (ingest.quota) pause it for the whole fleet and try again: not an attempt."""

    def __init__(self, message: str, *, status: int, retry_after: str | None, product_id: str | None = None) -> None:
        super().__init__(message, product_id=product_id)
        self.status = status
        self.retry_after = retry_after  # the Retry-After header as sent (seconds or an HTTP date), if any


class ProviderCredentialsRefused(ProviderThrottled):
    """The provider's sign-in refused our credentials: nothing to retry per product. The fleet pauses
    the provider (growing pauses, not a retry storm) until an operator fixes the credentials."""


class StateConflict(IngestError):
    """A guarded state transition found the product in another state than expected."""

    exit_code = 75
    retryable = False
