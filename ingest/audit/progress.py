"""How a long audit shows its progress on stderr: a bar at a terminal, a log line every few seconds
otherwise (a supervisor's log, cron mail)."""

from __future__ import annotations

import logging
import time
from typing import TextIO

log = logging.getLogger("ingest.audit")

LOG_EVERY_S = 10.0


class LogProgress:
    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self.collection = ""
        self.total = 0
        self._last = 0.0

    def start(self, collection: str, items: int) -> None:
        self.collection, self.total, self._last = collection, items, time.monotonic()

    def update(self, items: int, objects: int) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            log.info("audit %s: %d of %d items, %d objects listed", self.collection, items, self.total, objects)

    def finish(self) -> None:
        pass


class BarProgress:
    """Items checked of the collection's total, and the objects listed so far, redrawn at most 10 times a second."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("items"),
            TextColumn("{task.fields[objects]} objects"), TimeElapsedColumn(),
            console=Console(file=stream), transient=True,
        )  # fmt: skip
        self._task = self._bar.add_task("", total=None, objects=0)

    def start(self, collection: str, items: int) -> None:
        self._bar.update(self._task, description=f"audit {collection}", total=items, completed=0, objects=0)
        self._bar.start()

    def update(self, items: int, objects: int) -> None:
        self._bar.update(self._task, completed=items, objects=objects)

    def finish(self) -> None:
        self._bar.stop()


def progress_for(stream: TextIO) -> BarProgress | LogProgress:
    return BarProgress(stream) if stream.isatty() else LogProgress()
