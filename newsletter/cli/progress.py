"""Progress for long work (send, import, worker), on stderr.

On a terminal: rich bars with counts, rate and time left. Off a terminal (logs, CI, a pipe) a bar
cannot redraw and is cut to "0:00… 0:00:…", so there a plain line is printed instead every
``PLAIN_EVERY_SECONDS``, and a last one when the work ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from newsletter.delivery import ledger

#: Seconds between two plain progress lines when the output is not a terminal.
PLAIN_EVERY_SECONDS = 5.0


@dataclass
class _Line:
    """One piece of work, reported as a plain line."""

    label: str
    total: int | None
    started: float
    completed: int = 0
    detail: str = ""
    printed: str | None = None
    printed_at: float | None = None

    def text(self) -> str:
        if self.total is None:
            done = f"{self.completed}"
        else:
            percent = self.completed * 100 // self.total if self.total else 100
            done = f"{self.completed}/{self.total} ({percent}%)"
        return f"{self.label}: {done}{f' {self.detail}' if self.detail else ''}"


class Bars:
    """Progress on stderr: counters for imports, and a send bar with outcomes and rate."""

    def __init__(
        self,
        console: Console,
        *,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.every = PLAIN_EVERY_SECONDS if every is None else every
        self.clock = clock
        self.plain = not console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._lines: list[_Line] = []
        self._send: dict[str, Any] = {}

    def __enter__(self) -> Bars:
        if not self.plain:
            self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.plain:
            self.progress.stop()
            return
        for line in self._lines:
            if line.completed and line.text() != line.printed:
                self._print(line)

    def counter(self, label: str, total: int | None) -> Callable[[int], None]:
        if self.plain:
            line = self._add(label, total)
            return lambda count: self._advance(line, count)
        task = self.progress.add_task(label, total=total, detail="")
        return lambda count: self.progress.advance(task, count)

    def send_started(self, total: int) -> None:
        task: object = (
            self._add("Sending", total)
            if self.plain
            else self.progress.add_task("Sending", total=total, detail="")
        )
        self._send = {"task": task, "at": self.clock(), "sent": 0, "failed": 0, "retry": 0}

    def send_result(self, recorded: ledger.Recorded) -> None:
        state = self._send
        key = recorded.outcome if recorded.outcome in ("sent", "retry") else "failed"
        state[key] += 1
        done = state["sent"] + state["failed"] + state["retry"]
        rate = done / max(self.clock() - state["at"], 1e-6)
        detail = f"sent {state['sent']} · failed {state['failed']} · retry {state['retry']} · {rate:.0f} msg/s"
        task = state["task"]
        if isinstance(task, _Line):
            task.detail = detail
            self._advance(task, 1)
        else:
            self.progress.update(task, advance=1, detail=detail)

    def _add(self, label: str, total: int | None) -> _Line:
        line = _Line(label, total, started=self.clock())
        self._lines.append(line)
        return line

    def _advance(self, line: _Line, count: int) -> None:
        line.completed += count
        since = line.started if line.printed_at is None else line.printed_at
        if self.clock() - since >= self.every:
            self._print(line)

    def _print(self, line: _Line) -> None:
        line.printed = line.text()
        line.printed_at = self.clock()
        self.console.print(line.printed, markup=False, highlight=False)
