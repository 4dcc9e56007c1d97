"""Per-user accounting of the CDSE-like server: sessions opened by logins, downloads running at once.

CDSE's quotas (documentation.dataspace.copernicus.eu/Quotas.html): at most 100 active sessions per
user, where "each session starts when the user generates a new token" and ends when its token
expires (10 minutes) unless refreshed (within 60 minutes); at most 4 concurrent connections per user
to the download service. Both limits are answered with 429. Clocks are injected (seconds since the
epoch, as JWT ``exp`` claims count) so that the logic is tested without sleeping.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# what CDSE answers over a session or connection limit (its download service's code and message)
TOO_MANY_BODY = {"code": "DAT-ZIP-100", "message": "Max session number exceeded"}


class LimitExceeded(Exception):
    """A user is over a limit (answered 429)."""


@dataclass
class Session:
    id: str
    user: str
    expires: float  # end of the latest access token; a refresh moves it
    refresh_expires: float


class SessionBook:
    """Sessions per user: a password grant opens one, a refresh extends it, expiry ends it."""

    def __init__(self, max_sessions: int = 100, clock: Callable[[], float] | None = None) -> None:
        self.max_sessions = max_sessions
        self.clock = clock or time.time
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self.reset_counters()

    def reset_counters(self) -> None:
        self.opened: dict[str, int] = {}
        self.refreshed: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.max_live: dict[str, int] = {}

    def _live(self, user: str, now: float) -> int:
        return sum(1 for s in self._sessions.values() if s.user == user and s.expires > now)

    def open(self, user: str, access_lifetime: float, refresh_lifetime: float) -> Session:
        """A new session for ``user``; LimitExceeded when ``max_sessions`` are live already."""
        with self._lock:
            now = self.clock()
            self._sessions = {k: s for k, s in self._sessions.items() if s.refresh_expires > now}
            if self._live(user, now) >= self.max_sessions:
                self.rejected[user] = self.rejected.get(user, 0) + 1
                raise LimitExceeded(f"{user}: {self.max_sessions} sessions live")
            session = Session(str(uuid.uuid4()), user, now + access_lifetime, now + refresh_lifetime)
            self._sessions[session.id] = session
            self.opened[user] = self.opened.get(user, 0) + 1
            live = self._live(user, now)
            self.max_live[user] = max(self.max_live.get(user, 0), live)
            return session

    def refresh(self, session_id: str, access_lifetime: float, refresh_lifetime: float) -> Session | None:
        """Extend a session whose refresh token is still valid; None when it is gone."""
        with self._lock:
            now = self.clock()
            session = self._sessions.get(session_id)
            if session is None or session.refresh_expires <= now:
                return None
            session.expires = now + access_lifetime
            session.refresh_expires = now + refresh_lifetime
            self.refreshed[session.user] = self.refreshed.get(session.user, 0) + 1
            return session

    def live(self, user: str) -> int:
        with self._lock:
            return self._live(user, self.clock())

    def end_all(self) -> None:
        """Forget every session (``DELETE /_stats`` starts from a clean slate)."""
        with self._lock:
            self._sessions.clear()
            self.reset_counters()

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            now = self.clock()
            users = {s.user for s in self._sessions.values()} | set(self.opened)
            return {
                "max_sessions": self.max_sessions,
                "live": {u: self._live(u, now) for u in sorted(users)},
                "opened": dict(self.opened),
                "refreshed": dict(self.refreshed),
                "rejected": dict(self.rejected),
                "max_live": dict(self.max_live),
            }


class DownloadSlots:
    """Downloads running at once, per user and overall, with their high-water marks.

    ``max_concurrent`` never exceeds the limit (the one over it is refused); ``max_attempted`` counts
    the refused request too: what a client tried to run at once, the figure to hold a client to.
    """

    def __init__(self, max_per_user: int = 4) -> None:
        self.max_per_user = max_per_user
        self._lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Restart the counters and marks (downloads running now stay counted)."""
        with self._lock:
            self.active = {u: n for u, n in self.active.items() if n}
            self.max_active = sum(self.active.values())
            self.max_active_per_user: dict[str, int] = dict(self.active)
            self.max_attempted = self.max_active
            self.max_attempted_per_user: dict[str, int] = dict(self.active)
            self.started: dict[str, int] = {}
            self.rejected: dict[str, int] = {}

    def acquire(self, user: str) -> None:
        """Take a slot for ``user``; LimitExceeded when ``max_per_user`` downloads of theirs run."""
        with self._lock:
            running = self.active.get(user, 0)
            self.max_attempted_per_user[user] = max(self.max_attempted_per_user.get(user, 0), running + 1)
            self.max_attempted = max(self.max_attempted, sum(self.active.values()) + 1)
            if running >= self.max_per_user:
                self.rejected[user] = self.rejected.get(user, 0) + 1
                raise LimitExceeded(f"{user}: {running} downloads running")
            self.active[user] = running + 1
            self.started[user] = self.started.get(user, 0) + 1
            self.max_active_per_user[user] = max(self.max_active_per_user.get(user, 0), running + 1)
            self.max_active = max(self.max_active, sum(self.active.values()))

    def release(self, user: str) -> None:
        with self._lock:
            self.active[user] = max(0, self.active.get(user, 0) - 1)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "max_per_user": self.max_per_user,
                "active": {u: n for u, n in self.active.items() if n},
                "max_concurrent": self.max_active,
                "max_concurrent_per_user": dict(self.max_active_per_user),
                "max_attempted": self.max_attempted,
                "max_attempted_per_user": dict(self.max_attempted_per_user),
                "started": dict(self.started),
                "rejected": dict(self.rejected),
            }
