"""The app factory: ``create_app(app)`` wires the routers, middlewares and error handlers.

Nothing here runs at import time; the factory reads only the settings of the :class:`App` it is given.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from kernel import utcnow
from newsletter import __version__
from newsletter.bootstrap import App
from newsletter.config import check_secret_keys
from newsletter.services import health
from newsletter.services.metrics import read_gauges
from newsletter.web import api, archive, errors, pages, sponsor_links
from newsletter.web.api import webhooks
from newsletter.web.api.auth import bearer, is_admin
from newsletter.web.api.subscribers import IMPORT_MAX_BYTES
from newsletter.web.api.webhooks import WEBHOOK_MAX_BYTES
from newsletter.web.metrics import CONTENT_TYPE, Metrics, RequestMetrics
from newsletter.web.security import BodyLimit, SecurityHeaders, parse_networks
from newsletter.web.state import Clock, EditionControls, State, WebState

log = logging.getLogger(__name__)

FORM_BODY_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def check_can_serve(app: App) -> None:
    """The web refuses a weak secret key outside demo mode: every link would be forgeable."""
    check_secret_keys(app.settings)


def _asset(app: App, template: str, media_type: str) -> Asset:
    body = app.renderer.render_page(template).encode()
    return Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


def edition_controls(app: App) -> EditionControls:
    """The edition operations of the admin API, bound to ``app``'s parts."""
    return EditionControls(
        check_can_send=app.check_can_send,
        plan_send=lambda day: app.sending.plan_send(edition_date=day),
        send=lambda day, now, follow_up: app.sending.send(
            edition_date=day, now=now, follow_up=follow_up
        ),
        send_test_copy=lambda day, to: app.sending.send_test_copy(edition_date=day, to=to),
        set_paused=lambda day, paused, now: app.editions.set_paused(
            edition_date=day, paused=paused, now=now
        ),
        cancel=lambda day, now: app.editions.cancel_edition(edition_date=day, now=now),
        stats=lambda day, now: app.editions.edition_stats(edition_date=day, now=now),
        build=lambda day, now, explain: app.editions.build(
            edition_date=day, now=now, explain=explain
        ),
        relays=app.editions.relays,
    )


def create_app(app: App, *, clock: Clock = utcnow) -> FastAPI:
    """The web app of ``app``: pages, archive, admin API, health and metrics.

    ``clock`` gives the current time (tests move it to expire tokens and rate-limit windows).
    """
    check_can_serve(app)
    settings = app.settings
    if settings.admin_token is None:
        log.warning(
            "the admin API under /api is off (every call answers 401): "
            "set NEWSLETTER_ADMIN_TOKEN to turn it on"
        )
    metrics = Metrics(
        database=lambda detailed: read_gauges(app.database, now=clock(), detailed=detailed)
    )
    state = WebState.build(
        settings=settings,
        database=app.database,
        renderer=app.renderer,
        signer=app.signer(),
        transport=app.transport,
        editions=edition_controls(app),
        clock=clock,
        metrics=metrics,
        networks=parse_networks(settings.trusted_proxies),
    )
    assets = {
        "site.css": _asset(app, "web/site.css.j2", "text/css; charset=utf-8"),
        "timezone.js": _asset(app, "web/timezone.js.j2", "text/javascript; charset=utf-8"),
    }

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The subscription mails: those left by a process that died, and retries when due.
        stop = threading.Event()

        def deliver() -> None:
            state.outbox.run(stop=stop, before=state.mails.prepare_all)

        pump = threading.Thread(target=deliver, name="outbox", daemon=True)
        pump.start()
        try:
            yield
        finally:
            stop.set()
            state.outbox.wake()
            pump.join(timeout=5)
            state.outbox.close()

    fastapi = FastAPI(
        title=f"{settings.newsletter_name}: web and admin API",
        version=__version__,
        description=(
            "Subscribe, confirm, preferences, one-click unsubscribe and archive pages, and the "
            "admin API under /api (bearer token: NEWSLETTER_ADMIN_TOKEN). See docs/web.md. "
            "Bounce and complaint webhook: /api/webhooks/bounces (NEWSLETTER_WEBHOOK_SECRET), "
            "see docs/bounces.md."
        ),
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # no redirect is ever built from the request's Host header
        lifespan=lifespan,
    )
    fastapi.state.web = state
    errors.install(fastapi)
    fastapi.include_router(pages.router)
    fastapi.include_router(archive.router)
    fastapi.include_router(sponsor_links.router)
    fastapi.include_router(api.router)
    fastapi.include_router(webhooks.router)

    @fastapi.get("/static/{name}", include_in_schema=False)
    def static(name: str, request: Request) -> Response:
        asset = assets.get(name)
        if asset is None:
            return PlainTextResponse("not found\n", status_code=404)
        headers = {"etag": asset.etag, "cache-control": "public, max-age=3600"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    @fastapi.get(
        "/healthz",
        tags=["operations"],
        summary="Whether the database answers",
        responses={503: {"description": "The database does not answer."}},
    )
    def healthz(state: State) -> JSONResponse:
        if not health.database_answers(state.database):
            return JSONResponse(
                {"status": "unavailable", "database": "error"},
                status_code=503,
                headers={"cache-control": "no-store"},
            )
        return JSONResponse(
            {"status": "ok", "database": "ok"}, headers={"cache-control": "no-store"}
        )

    @fastapi.get(
        "/metrics",
        tags=["operations"],
        summary="Metrics in the Prometheus text format",
        response_class=PlainTextResponse,
    )
    def prometheus(
        state: State,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> PlainTextResponse:
        detailed = is_admin(state, credentials)
        return PlainTextResponse(
            state.metrics.render(detailed=detailed),
            media_type=CONTENT_TYPE,
            headers={"cache-control": "no-store"},
        )

    fastapi.add_middleware(
        BodyLimit,
        default=FORM_BODY_LIMIT,
        larger=(
            ("/api/webhooks/", WEBHOOK_MAX_BYTES),
            ("/api/", IMPORT_MAX_BYTES + 65536),
        ),
    )
    fastapi.add_middleware(SecurityHeaders, hsts=settings.base_url.startswith("https://"))
    fastapi.add_middleware(RequestMetrics, metrics=metrics)
    return fastapi
