"""Fault knobs of the CDSE-like server: the local provider's (:class:`~ingest.devtools.provider.Faults`) and more.

Inherited, with the same meaning: ``error_rate`` (500) and ``fail_first_n`` (503) on search and
download requests, ``delay_s`` on every request, ``throttle_bps`` on downloads, ``products`` (per
product: truncate, corrupt, vanish, 500; keyed by catalogue id, OData ``Id`` or ``Name``). Added:
429s with or without ``Retry-After``, a token endpoint that is down, OData searches failing on given
pages, and products shown offline. Set them as the provider's are: ``PUT|PATCH|DELETE /_faults``.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from ingest.devtools.provider import Faults


@dataclass
class CdseFaults(Faults):
    status_429_rate: float = 0.0
    """Share (0..1) of search and download requests answered 429 (drawn from ``seed``)."""
    status_429_first_n: int = 0
    """The first N search and download requests answer 429 (counted from when the faults were set)."""
    retry_after_s: int | None = None
    """``Retry-After`` (seconds) on those 429s; None: no header."""
    token_down: bool = False
    """The token endpoint answers 503 (discovery and keys stay up)."""
    search_500_pages: list[int] = field(default_factory=list)
    """1-based pages (``$skip // $top + 1``) of OData searches answered 500."""
    search_500_times: int = 0
    """How many times each of those pages fails (0: every time)."""
    offline: list[str] = field(default_factory=list)
    """Products shown ``Online: false`` (catalogue id, OData Id or Name); ``$value`` refuses them."""
    offline_status: int = 422
    """What ``$value`` answers for an offline product (CDSE documents no code for it)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= float(self.status_429_rate) <= 1.0:
            raise ValueError(f"status_429_rate must be within 0..1, got {self.status_429_rate!r}")
        self.status_429_rate = float(self.status_429_rate)
        self.status_429_first_n = int(self.status_429_first_n)
        self.search_500_times = int(self.search_500_times)
        if self.status_429_first_n < 0 or self.search_500_times < 0:
            raise ValueError("status_429_first_n and search_500_times must be >= 0")
        if self.retry_after_s is not None:
            self.retry_after_s = int(self.retry_after_s)
            if self.retry_after_s < 0:
                raise ValueError("retry_after_s must be >= 0 or null")
        self.token_down = bool(self.token_down)
        if not isinstance(self.search_500_pages, list) or not all(
            isinstance(p, int) and p >= 1 for p in self.search_500_pages
        ):
            raise ValueError("search_500_pages must be a list of page numbers >= 1")
        if not isinstance(self.offline, list) or not all(isinstance(p, str) for p in self.offline):
            raise ValueError("offline must be a list of product ids")
        self.offline_status = int(self.offline_status)
        if not 400 <= self.offline_status <= 599:
            raise ValueError("offline_status must be an HTTP error status (400..599)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CdseFaults:
        faults = super().from_dict(data)
        assert isinstance(faults, CdseFaults)
        return faults


class FaultCounters:
    """The state behind the counted knobs (429 first N, page failures, 429 rate RNG); thread-safe."""

    def __init__(self, faults: CdseFaults) -> None:
        self._lock = threading.Lock()
        self.faults = faults
        self._rng = random.Random(faults.seed + 1)  # noqa: S311 - fault injection, not cryptography
        self._requests = 0
        self._pages: dict[int, int] = {}

    def too_many(self) -> bool:
        """Should this search/download request be answered 429?"""
        f = self.faults
        with self._lock:
            self._requests += 1
            if self._requests <= f.status_429_first_n:
                return True
            return bool(f.status_429_rate and self._rng.random() < f.status_429_rate)

    def page_fails(self, page: int) -> bool:
        """Should this OData search page be answered 500?"""
        f = self.faults
        if page not in f.search_500_pages:
            return False
        with self._lock:
            n = self._pages.get(page, 0)
            self._pages[page] = n + 1
            return f.search_500_times == 0 or n < f.search_500_times
