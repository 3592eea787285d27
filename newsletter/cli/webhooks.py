"""``newsletter webhooks``: the endpoints that receive signed event messages (docs/webhooks.md)."""

from __future__ import annotations

from datetime import datetime

import click
from rich.table import Table

from kernel import utcnow
from newsletter.cli.context import Context, pass_context
from newsletter.services import webhooks
from newsletter.webhooks.events import EVENT_TYPES


@click.group("webhooks")
def webhooks_group() -> None:
    """Outgoing webhooks: endpoints that receive signed event messages."""


def _events(value: str | None) -> list[str] | None:
    return None if value is None else value.split(",")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _state(endpoint: webhooks.Endpoint) -> str:
    if endpoint.enabled:
        return "enabled"
    return f"disabled: {endpoint.disabled_reason or 'no reason recorded'}"


@webhooks_group.command("add")
@click.argument("url")
@click.option(
    "--events",
    metavar="EVENT[,EVENT…]",
    help=f"Comma-separated events to receive (default: all): {', '.join(EVENT_TYPES)}.",
)
@click.option("--description", help="A note for yourself, e.g. which system receives it.")
@pass_context
def webhooks_add(context: Context, url: str, events: str | None, description: str | None) -> None:
    """Register an endpoint; prints its signing secret (also shown by 'webhooks secret ID')."""
    created = webhooks.add(
        context.app.database,
        url=url,
        events=_events(events),
        description=description,
        now=utcnow(),
    )
    endpoint = created.endpoint
    context.console.print(
        f"Added endpoint {endpoint.id}: {endpoint.url} ({', '.join(endpoint.events)}).",
        markup=False,
    )
    context.console.print("Signing secret (give it to the receiver to verify signatures):")
    click.echo(created.secret)


@webhooks_group.command("list")
@pass_context
def webhooks_list(context: Context) -> None:
    """Every endpoint: its events, state (with why it was disabled) and queue."""
    rows = webhooks.endpoints(context.app.database)
    if not rows:
        context.console.print("No webhook endpoint; add one with 'newsletter webhooks add URL'.")
        return
    table = Table(title="Webhook endpoints")
    for column in ("id", "url", "events", "state", "pending", "delivered", "last success"):
        table.add_column(column, overflow="fold")
    for endpoint in rows:
        table.add_row(
            str(endpoint.id),
            endpoint.url,
            ", ".join(endpoint.events),
            _state(endpoint),
            str(endpoint.pending),
            str(endpoint.delivered),
            _when(endpoint.last_success_at),
        )
    context.console.print(table)


@webhooks_group.command("show")
@click.argument("endpoint_id", metavar="ID", type=int)
@pass_context
def webhooks_show(context: Context, endpoint_id: int) -> None:
    """One endpoint in full: state, failures, last error, queue."""
    endpoint = webhooks.endpoint(context.app.database, endpoint_id)
    lines = [
        ("id", str(endpoint.id)),
        ("url", endpoint.url),
        ("description", endpoint.description or "-"),
        ("events", ", ".join(endpoint.events)),
        ("state", _state(endpoint)),
        ("failures in a row", str(endpoint.consecutive_failures)),
        ("next attempt not before", _when(endpoint.retry_at)),
        ("last success", _when(endpoint.last_success_at)),
        ("last error", endpoint.last_error or "-"),
        ("pending", str(endpoint.pending)),
        ("oldest pending", _when(endpoint.oldest_pending_at)),
        ("delivered", str(endpoint.delivered)),
        ("created", _when(endpoint.created_at)),
    ]
    for name, value in lines:
        click.echo(f"{name}: {value}")


@webhooks_group.command("secret")
@click.argument("endpoint_id", metavar="ID", type=int)
@pass_context
def webhooks_secret(context: Context, endpoint_id: int) -> None:
    """Print the endpoint's signing secret (whsec_…)."""
    click.echo(webhooks.secret(context.app.database, endpoint_id))


@webhooks_group.command("enable")
@click.argument("endpoint_id", metavar="ID", type=int)
@pass_context
def webhooks_enable(context: Context, endpoint_id: int) -> None:
    """Enable an endpoint; what waits in its queue is sent at once."""
    endpoint = webhooks.change(context.app.database, endpoint_id, enabled=True, now=utcnow())
    context.console.print(
        f"Endpoint {endpoint.id} enabled; {endpoint.pending} message(s) waiting are sent next."
    )


@webhooks_group.command("disable")
@click.argument("endpoint_id", metavar="ID", type=int)
@pass_context
def webhooks_disable(context: Context, endpoint_id: int) -> None:
    """Disable an endpoint: no event is queued for it until it is enabled again."""
    endpoint = webhooks.change(context.app.database, endpoint_id, enabled=False, now=utcnow())
    context.console.print(f"Endpoint {endpoint.id} disabled; {endpoint.pending} message(s) kept.")


@webhooks_group.command("events")
@click.argument("endpoint_id", metavar="ID", type=int)
@click.argument("events")
@pass_context
def webhooks_events(context: Context, endpoint_id: int, events: str) -> None:
    """Change which events an endpoint receives (comma-separated)."""
    endpoint = webhooks.change(
        context.app.database, endpoint_id, events=_events(events), now=utcnow()
    )
    context.console.print(f"Endpoint {endpoint.id} receives {', '.join(endpoint.events)}.")


@webhooks_group.command("remove")
@click.argument("endpoint_id", metavar="ID", type=int)
@pass_context
def webhooks_remove(context: Context, endpoint_id: int) -> None:
    """Delete an endpoint and its queue."""
    dropped = webhooks.remove(context.app.database, endpoint_id)
    context.console.print(
        f"Removed endpoint {endpoint_id}"
        + (f"; {dropped} undelivered message(s) dropped." if dropped else ".")
    )


@webhooks_group.command("test")
@click.argument("endpoint_id", metavar="ID", type=int)
@pass_context
def webhooks_test(context: Context, endpoint_id: int) -> None:
    """Post a signed 'webhook.test' message now and show the answer (exit 1 if not 2xx)."""
    app = context.app
    result = webhooks.send_test(
        app.database, endpoint_id, timeout=app.settings.webhook_timeout, now=utcnow()
    )
    if result.delivered:
        context.console.print(f"Delivered {result.message_id}: HTTP {result.status}.")
        return
    context.err.print(f"Not delivered ({result.message_id}): {result.error}", markup=False)
    raise SystemExit(1)
