"""What every request handler shares: the App, the clock, signing, mail, metrics, page rendering."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse

from newsletter.bootstrap import App
from newsletter.personal import Links
from newsletter.web.csrf import Csrf
from newsletter.web.mails import Mailer
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


@dataclass
class WebState:
    app: App
    clock: Clock
    signer: TokenSigner
    csrf: Csrf
    mailer: Mailer
    metrics: Metrics
    networks: tuple[IPNetwork, ...]
    site: Site
    links: Links
    _write_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(
        cls, app: App, *, clock: Clock, metrics: Metrics, networks: tuple[IPNetwork, ...]
    ) -> WebState:
        settings = app.settings
        secret = settings.secret_key.get_secret_value()
        mailer = Mailer(
            app,
            clock=clock,
            on_sent=lambda kind, outcome: metrics.count(metrics.mails, kind=kind, outcome=outcome),
        )
        return cls(
            app=app,
            clock=clock,
            signer=app.signer(),
            csrf=Csrf(secret.encode(), base_url=settings.base_url),
            mailer=mailer,
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

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A writing transaction. On SQLite, this process's writers queue on a lock first.

        SQLite admits one writer at a time; threads that find it busy sleep and retry with growing
        pauses, which makes the slowest requests wait far longer than the average. Queuing in
        the process hands the lock over at once; other processes still wait on SQLite itself.
        """
        database = self.app.database
        if database.dialect != "sqlite":
            with database.transaction() as session:
                yield session
            return
        with self._write_lock, database.transaction() as session:
            yield session

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
        html = self.app.renderer.render_page(
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


def get_state(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state


State = Annotated[WebState, Depends(get_state)]
