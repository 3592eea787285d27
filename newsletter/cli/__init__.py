"""The ``newsletter`` command: thin commands over :mod:`newsletter.services` and the subscriber list.

Each command parses its input, calls one service through the app that :mod:`newsletter.bootstrap`
builds, and presents the result. Errors meant for the operator are printed without a traceback,
with a non-zero exit code (2 for bad input or settings, 1 for everything else).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar

import click
from rich.console import Console

from newsletter import __version__, logs
from newsletter.cli import deliveries, issues, operations, sending
from newsletter.cli import sponsors as sponsor_commands
from newsletter.cli import subscribers as subscriber_commands
from newsletter.cli import webhooks as webhook_commands
from newsletter.cli.context import Context, pass_context
from newsletter.errors import NewsletterError

__all__ = ["Context", "cli", "main", "pass_context"]


class NewsletterGroup(click.Group):
    """Prints operator errors as one clear message and exits non-zero, without a traceback.

    ``web`` is loaded on first use: the web stack is not imported by workers and other commands.
    """

    LAZY: ClassVar[dict[str, tuple[str, str]]] = {"web": ("newsletter.web.command", "web")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY and cmd_name not in self.commands:
            module, attribute = self.LAZY[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.secho(f"error: {exc}", err=True, fg="red")
            ctx.exit(getattr(exc, "exit_code", 1))


@click.group(cls=NewsletterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="NEWSLETTER_CONFIG",
    help="TOML settings file (default: $NEWSLETTER_CONFIG). Environment variables override it.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, verbose: int) -> None:
    """A self-hosted daily crypto-insights newsletter.

    Typical day: fetch, issue build, issue preview, send. 'newsletter demo' runs them all on the
    bundled recorded data.
    """
    logs.configure(verbose)
    context = Context(
        config,
        Console(highlight=False, soft_wrap=True),
        Console(stderr=True, highlight=False, soft_wrap=True),
        verbose,
    )
    ctx.obj = context
    ctx.call_on_close(context.close)


for _command in (
    operations.show_config,
    operations.db,
    subscriber_commands.subscribers,
    sponsor_commands.sponsors,
    operations.fetch,
    issues.issue,
    sending.worker,
    operations.bounces,
    operations.outbox_command,
    operations.unsubscribes,
    sending.send,
    deliveries.deliveries,
    operations.scheduler_command,
    operations.run_command,
    operations.demo,
    webhook_commands.webhooks_group,
):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="newsletter")
