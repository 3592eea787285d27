"""What every command shares: the per-invocation :class:`Context` and the edition date option."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from kernel import utcnow
from newsletter import logs
from newsletter.bootstrap import App, bootstrap
from newsletter.config import Settings, load_settings
from newsletter.services.editions import parse_date


class Context:
    """Per-invocation state: the config file, and the app built from it on first use."""

    def __init__(
        self, config: Path | None, console: Console, err: Console, verbosity: int = 0
    ) -> None:
        self.config = config
        self.verbosity = verbosity
        self.console = console
        self.err = err
        self._app: App | None = None

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(self.config, **overrides)

    @property
    def app(self) -> App:
        if self._app is None:
            settings = self.settings()
            if settings.log_format != "text":
                logs.configure(self.verbosity, settings.log_format)
            self._app = bootstrap(settings)
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


pass_context = click.make_pass_decorator(Context)


def date_option(
    help_text: str = "Edition date, YYYY-MM-DD (default: today).",
) -> Callable[..., Any]:
    return click.option("--date", "date_text", metavar="YYYY-MM-DD", help=help_text)


def retention_options(older_than_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--older-than DAYS`` (required) and ``--dry-run``, as every ``… prune`` command takes them."""

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--dry-run", is_flag=True, help="Count what would be pruned; change nothing."
        )(command)
        return click.option(
            "--older-than",
            "days",
            type=int,
            required=True,
            metavar="DAYS",
            help=older_than_help,
        )(command)

    return apply


def chosen_date(context: Context, date_text: str | None) -> date:
    if date_text:
        return parse_date(date_text)
    return context.app.editions.today(utcnow())


def count_lines(file: Path) -> int | None:
    """Data rows of a CSV file (its lines but the header), for a progress total."""
    try:
        with file.open("rb") as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    except OSError:
        return None
