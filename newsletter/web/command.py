"""``newsletter web``: serve the web app with uvicorn.

Register it on the command group in ``newsletter/cli.py``::

    from newsletter.web.command import web
    cli.add_command(web)

It runs under that group, which puts its ``Context`` (settings, the App) in ``ctx.obj``.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import click
import uvicorn
from fastapi import FastAPI

from newsletter import logs
from newsletter.bootstrap import bootstrap
from newsletter.config import CONFIG_ENV_VAR, load_settings
from newsletter.web.app import check_can_serve, create_app

if TYPE_CHECKING:
    # Only for the annotation: importing newsletter.cli here would make a cycle once cli.py
    # registers this command. At run time the group's Context arrives as click's ctx.obj.
    from newsletter.cli import Context


def uvicorn_options(*, host: str, port: int) -> dict[str, Any]:
    """The uvicorn options of every way the web app is served (``newsletter web``, ``newsletter run``).

    The client address comes from NEWSLETTER_TRUSTED_PROXIES, not from uvicorn's proxy headers;
    logging is set up by the command group (-v, -vv), which also decides whether requests are logged.
    """
    return {
        "host": host,
        "port": port,
        "proxy_headers": False,
        "server_header": False,
        "log_config": None,
        "access_log": logging.getLogger().isEnabledFor(logging.INFO),
    }


# Internal hand-over from ``newsletter web --workers N`` to its worker processes.
_VERBOSITY_ENV_VAR = "_NEWSLETTER_WEB_VERBOSITY"


@click.command("web")
@click.option("--host", help="Address to listen on (default: NEWSLETTER_WEB_HOST, 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port to listen on (default: NEWSLETTER_WEB_PORT, 8000).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes; rate limits and sessions hold across them (they live in the database).",
)
@click.pass_obj
def web(context: Context, host: str | None, port: int | None, workers: int) -> None:
    """Serve the subscribe, preferences, unsubscribe and archive pages and the admin API.

    Put it behind a reverse proxy that terminates TLS (see docs/web.md). It refuses to start with
    the default NEWSLETTER_SECRET_KEY unless NEWSLETTER_DEMO is on.
    """
    app = context.app
    check_can_serve(app)
    settings = app.settings
    host = host or settings.web_host
    port = port or settings.web_port
    options = uvicorn_options(host=host, port=port)
    shown = f"[{host}]" if ":" in host else host
    context.err.print(
        f"Serving {settings.newsletter_name} on http://{shown}:{port} "
        f"(public URL {settings.base_url}, {workers} worker{'s' if workers > 1 else ''}); "
        "Ctrl+C stops.",
        markup=False,
    )
    # The outgoing webhooks go out from here too, so that they do where no worker runs.
    stop = threading.Event()
    webhooks = threading.Thread(
        target=app.worker.deliver_webhooks, kwargs={"stop": stop}, name="webhooks", daemon=True
    )
    webhooks.start()
    try:
        if workers == 1:
            uvicorn.run(create_app(app), **options)
            return
        if context.config is not None:
            os.environ[CONFIG_ENV_VAR] = str(context.config)
        # Each worker is a fresh process: it sets up the same (redacting) logging as this one.
        os.environ[_VERBOSITY_ENV_VAR] = str(context.verbosity)
        uvicorn.run(
            "newsletter.web.command:app_from_environment",
            factory=True,
            workers=workers,
            **options,
        )
    finally:
        stop.set()
        webhooks.join(timeout=30)


def app_from_environment() -> FastAPI:
    """The app of a worker process, built from the environment (``--workers`` > 1).

    Logging is configured here as the command group does in the parent, so that a worker's
    lines are redacted too (they name personal-link paths).
    """
    settings = load_settings()
    try:
        verbosity = int(os.environ.get(_VERBOSITY_ENV_VAR, "0"))
    except ValueError:
        verbosity = 0
    logs.configure(verbosity, settings.log_format)
    return create_app(bootstrap(settings))
