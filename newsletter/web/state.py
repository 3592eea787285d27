"""What every request handler shares: the services' dependencies, signing, mail, metrics, pages.

Built by the app factory from the parts :mod:`newsletter.bootstrap` made; nothing here knows which
concrete transport or database it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.responses import HTMLResponse

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.delivery.subscription_mails import SubscriptionMails
from newsletter.delivery.transports import SendResult, Transport
from newsletter.editions import BuildResult
from newsletter.personal import Links
from newsletter.render import Renderer
from newsletter.services.editions import EditionStats
from newsletter.services.outbox import Outbox, OutboxPump
from newsletter.services.queued import QueuedWrites
from newsletter.services.sending import SendOutcome, SendPlan
from newsletter.web.csrf import Csrf
from newsletter.web.metrics import Metrics
from newsletter.web.security import IPNetwork, client_ip
from subscribers.tokens import TokenSigner

Clock = Callable[[], datetime]

NO_STORE = "no-store"


@dataclass(frozen=True, slots=True)
class Site:
    """What every page shows and links to."""

    name: str
    #: The path of the public base URL ("" at the root), put before every link of a page.
    prefix: str
    base_url: str
    postal_address: str
    unsubscribe_address: str


@dataclass(frozen=True, slots=True)
class EditionControls:
    """The edition operations the admin API starts, bound to the configured parts by the factory."""

    check_can_send: Callable[[], None]
    plan_send: Callable[[date], SendPlan]
    #: (edition date, now, follow_up)
    send: Callable[[date, datetime, bool], SendOutcome]
    #: (edition date, address)
    send_test_copy: Callable[[date, str], SendResult]
    #: (edition date, paused, now): False when it already was in that state
    set_paused: Callable[[date, bool, datetime], bool]
    #: (edition date, now): the queued deliveries dropped
    cancel: Callable[[date, datetime], int]
    stats: Callable[[date, datetime], EditionStats]
    #: (edition date, now, explain): build or rebuild the edition
    build: Callable[[date, datetime, bool], BuildResult]
    #: Per relay, its counts of all editions (sent, deferred, failed, skipped)
    relays: Callable[[], dict[str, dict[str, int]]]


@dataclass
class WebState:
    settings: Settings
    #: The database for the services; this process's SQLite writers take turns.
    database: QueuedWrites
    renderer: Renderer
    editions: EditionControls
    clock: Clock
    signer: TokenSigner
    csrf: Csrf
    #: Composes the subscription mails the services write to the outbox.
    mails: SubscriptionMails
    #: Delivers the outbox from this process: nudged after a page wrote a mail, and on a timer.
    outbox: OutboxPump
    metrics: Metrics
    networks: tuple[IPNetwork, ...]
    site: Site
    links: Links

    @classmethod
    def build(
        cls,
        *,
        settings: Settings,
        database: Database,
        renderer: Renderer,
        signer: TokenSigner,
        transport: Callable[[], Transport],
        editions: EditionControls,
        clock: Clock,
        metrics: Metrics,
        networks: tuple[IPNetwork, ...],
    ) -> WebState:
        secret = settings.secret_key.get_secret_value()
        queued = QueuedWrites(database)
        pump = OutboxPump(
            Outbox(
                queued,
                clock,
                max_attempts=settings.outbox_max_attempts,
                lease=timedelta(seconds=settings.outbox_lease_seconds),
                on_result=lambda kind, outcome: metrics.count(
                    metrics.mails, kind=kind, outcome=outcome
                ),
            ),
            transport,
        )
        return cls(
            settings=settings,
            database=queued,
            renderer=renderer,
            editions=editions,
            clock=clock,
            signer=signer,
            csrf=Csrf(secret.encode(), base_url=settings.base_url),
            mails=SubscriptionMails(
                settings=settings, renderer=renderer, signer=signer, clock=clock
            ),
            outbox=pump,
            metrics=metrics,
            networks=networks,
            site=Site(
                name=settings.newsletter_name,
                prefix=urlsplit(settings.base_url).path.rstrip("/"),
                base_url=settings.base_url,
                postal_address=settings.postal_address,
                unsubscribe_address=settings.unsubscribe_address,
            ),
            links=Links(settings.base_url),
        )

    def client_ip(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return client_ip(peer, request.headers.getlist("x-forwarded-for"), self.networks)

    def page(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        title: str,
        form: bool = False,
        cache: str = NO_STORE,
        headers: dict[str, str] | None = None,
        **values: Any,
    ) -> HTMLResponse:
        """Render a page of ``templates/web/``; with ``form`` it carries a CSRF token (and cookie)."""
        token, new_cookie = self.csrf.issue(request) if form else ("", None)
        html = self.renderer.render_page(
            f"web/{template}",
            site=self.site,
            title=title,
            csrf_token=token,
            **values,
        )
        response = HTMLResponse(html, status_code=status, headers=headers)
        response.headers["cache-control"] = cache
        if new_cookie is not None:
            self.csrf.set_cookie(response, new_cookie)
        return response

    def message(
        self,
        request: Request,
        *,
        status: int,
        title: str,
        text: str,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        """A page that only says something (errors, outcomes)."""
        return self.page(
            request,
            "message.html.j2",
            status=status,
            title=title,
            text=text,
            hint=hint,
            headers=headers,
        )


async def get_state(request: Request) -> WebState:
    # async: a plain function as a dependency costs every request a hop to the thread pool.
    state: WebState = request.app.state.web
    return state


State = Annotated[WebState, Depends(get_state)]
