"""How a long reconciliation shows its progress on stderr: a bar at a terminal (days of the window done,
pages read, products compared), a log line every few seconds otherwise (a supervisor's log, cron mail).
The same two forms as the audit's (``ingest.audit.progress``)."""

from __future__ import annotations

import logging
import time
from typing import Protocol, TextIO

log = logging.getLogger("ingest.upstream")

LOG_EVERY_S = 10.0


class Progress(Protocol):
    def start(self, collection: str, chunks: int) -> None: ...
    def page(self, products: int) -> None: ...
    def chunk_done(self, compared: int) -> None: ...
    def finish(self) -> None: ...


class Quiet:
    def start(self, collection: str, chunks: int) -> None:
        pass

    def page(self, products: int) -> None:
        pass

    def chunk_done(self, compared: int) -> None:
        pass

    def finish(self) -> None:
        pass


class LogProgress:
    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self.collection = ""
        self.total = self.chunks = self.pages = self.listed = self.compared = 0
        self._last = 0.0

    def start(self, collection: str, chunks: int) -> None:
        self.collection, self.total, self._last = collection, chunks, time.monotonic()

    def page(self, products: int) -> None:
        self.pages += 1
        self.listed += products
        self._maybe_log()

    def chunk_done(self, compared: int) -> None:
        self.chunks += 1
        self.compared += compared
        self._maybe_log()

    def _maybe_log(self) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            log.info(
                "reconcile %s: %d of %d days, %d pages read (%d products listed), %d products compared",
                self.collection, self.chunks, self.total, self.pages, self.listed, self.compared,
            )  # fmt: skip

    def finish(self) -> None:
        pass


class BarProgress:
    """Chunks (days) of the window done, pages read and products compared, redrawn at most 10 times a second."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("days"),
            TextColumn("{task.fields[pages]} pages, {task.fields[compared]} compared"), TimeElapsedColumn(),
            console=Console(file=stream), transient=True,
        )  # fmt: skip
        self._task = self._bar.add_task("", total=None, pages=0, compared=0)
        self._pages = self._compared = 0

    def start(self, collection: str, chunks: int) -> None:
        self._bar.update(self._task, description=f"reconcile {collection}", total=chunks, completed=0)
        self._bar.start()

    def page(self, products: int) -> None:
        self._pages += 1
        self._bar.update(self._task, pages=self._pages)

    def chunk_done(self, compared: int) -> None:
        self._compared += compared
        self._bar.update(self._task, advance=1, compared=self._compared)

    def finish(self) -> None:
        self._bar.stop()


def progress_for(stream: TextIO) -> BarProgress | LogProgress:
    return BarProgress(stream) if stream.isatty() else LogProgress()
