"""Wiring: the only module that knows every concrete part. Builds them from ``Settings`` on demand."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

from kernel import utcnow
from newsletter.config import RelaySettings, Settings
from newsletter.db import Database
from newsletter.delivery.pacing import Pacer, relay_route
from newsletter.delivery.relays import FailoverTransport, Relay
from newsletter.delivery.sender import Sender, SenderIdentity
from newsletter.delivery.smtp import SmtpConfig, SmtpTransport
from newsletter.delivery.transports import FolderTransport, Transport
from newsletter.editions import ensure_variant
from newsletter.errors import ConfigError
from newsletter.personal import Links
from newsletter.render import Renderer
from newsletter.resources import templates_dir
from newsletter.services.editions import Editions
from newsletter.services.mailboxes import Mailboxes
from newsletter.services.outbox import Outbox
from newsletter.services.pending import PendingSignups
from newsletter.services.sending import Sending, check_can_send
from newsletter.services.webhook_delivery import WebhookSender
from newsletter.services.worker import Worker
from newsletter.webhooks.outbound import RetrySchedule
from subscribers.tokens import TokenSigner

if TYPE_CHECKING:
    from newsletter.delivery.dkim import Canonicalization, DkimSigner, DkimSigners

    # Fetching and the demo are imported where they are built: a worker, which uses neither,
    # starts without the HTTP, feed and migration libraries they bring.
    from newsletter.services.demo import Demo
    from newsletter.services.sources import Sources
    from newsletter.sources.feeds import FeedSource
    from newsletter.sources.fetch import Fetcher
    from newsletter.sources.market import MarketSource, SentimentSource


def relay_password(relay: RelaySettings) -> str | None:
    """A relay's password: written in the file, or read from the variable ``password_env`` names."""
    if relay.password_env is not None:
        value = os.environ.get(relay.password_env)
        if value is None:
            raise ConfigError(
                f"the password of the relay {relay.host}:{relay.port} is to be read from "
                f"{relay.password_env}, which is not set",
                hint=f"export {relay.password_env}=… or remove password_env from its [[relays]] table",
            )
        return value
    return relay.password.get_secret_value() if relay.password else None


@dataclass
class App:
    settings: Settings
    database: Database
    renderer: Renderer
    _closers: list[Transport] = field(default_factory=list)

    def transport(self) -> Transport:
        settings = self.settings
        transport: Transport = (
            FolderTransport(Path(settings.outbox_dir))
            if settings.transport == "folder"
            else self.relays()
        )
        if settings.dkim_private_key_file is not None:
            from newsletter.delivery.dkim import DkimSigningTransport

            transport = DkimSigningTransport(transport, self.dkim_signer())
        self._closers.append(transport)
        return transport

    def relays(self) -> FailoverTransport:
        """The SMTP relays by priority: ``[[relays]]``, or the one relay of the smtp_* settings."""
        settings = self.settings
        configs = [
            SmtpConfig(
                host=relay.host,
                port=relay.port,
                tls=relay.tls,
                username=relay.username,
                password=relay_password(relay),
                timeout=relay.timeout,
                pool_size=relay.max_connections,
            )
            for relay in settings.relays
        ] or [
            SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                tls=settings.smtp_tls,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value()
                if settings.smtp_password
                else None,
                timeout=settings.smtp_timeout,
                pool_size=settings.smtp_pool_size,
            )
        ]
        priorities = [relay.priority for relay in settings.relays] or [0]
        return FailoverTransport(
            [
                Relay(f"{config.host}:{config.port}", priority, SmtpTransport(config))
                for config, priority in zip(configs, priorities, strict=True)
            ],
            cooldown=float(settings.relay_cooldown_seconds),
            database=self.database,
        )

    def dkim_signer(self) -> DkimSigner | DkimSigners:
        """The DKIM key (or the RSA and Ed25519 keys side by side), loaded once."""
        from newsletter.delivery.dkim import DkimSigner, DkimSigners

        settings = self.settings
        assert settings.dkim_private_key_file is not None
        domain = settings.dkim_domain or settings.sender_domain
        header, body = settings.dkim_canonicalization.split("/")
        canonicalize = (cast("Canonicalization", header), cast("Canonicalization", body))
        first = DkimSigner.from_file(
            domain=domain,
            selector=settings.dkim_selector,
            key_file=Path(settings.dkim_private_key_file),
            algorithm=settings.dkim_algorithm,
            canonicalize=canonicalize,
        )
        if settings.dkim_ed25519_private_key_file is None:
            return first
        selector = settings.dkim_ed25519_selector
        if not selector or selector == settings.dkim_selector:
            raise ConfigError(
                "the Ed25519 DKIM key needs its own selector",
                hint="set NEWSLETTER_DKIM_ED25519_SELECTOR to a selector other than "
                "NEWSLETTER_DKIM_SELECTOR, and publish the Ed25519 public key there",
            )
        second = DkimSigner.from_file(
            domain=domain,
            selector=selector,
            key_file=Path(settings.dkim_ed25519_private_key_file),
            algorithm="ed25519-sha256",
            canonicalize=canonicalize,
        )
        return DkimSigners([first, second])

    def signer(self) -> TokenSigner:
        settings = self.settings
        return TokenSigner(
            settings.secret_key.get_secret_value(),
            fallbacks=[key.get_secret_value() for key in settings.secret_key_fallbacks],
        )

    def identity(self) -> SenderIdentity:
        settings = self.settings
        return SenderIdentity(
            headers_from=settings.sender,
            envelope_sender=settings.envelope_sender,
            list_id=settings.list_id_value,
            list_name=settings.newsletter_name,
            unsubscribe_mailto=settings.advertised_unsubscribe_mailto,
            domain=settings.sender_domain,
            links=Links(settings.base_url),
            signer=self.signer(),
            secret=settings.secret_key.get_secret_value().encode(),
        )

    def sender(
        self, transport: Transport, *, clock: Callable[[], datetime] = utcnow, **options: object
    ) -> Sender:
        settings = self.settings
        return Sender(
            database=self.database,
            transport=transport,
            identity=self.identity(),
            batch_size=settings.batch_size,
            flush_size=settings.flush_size,
            lease=timedelta(seconds=settings.lease_seconds),
            max_attempts=settings.max_attempts,
            max_age=timedelta(hours=settings.retry_hours),
            pacer=self.pacer(clock),
            clock=clock,
            variants=lambda issue, watchlist, sections: ensure_variant(
                self.database,
                self.renderer,
                settings,
                issue,
                watchlist=watchlist,
                sections=sections,
            ),
            **options,  # type: ignore[arg-type]
        )

    def pacer(self, clock: Callable[[], datetime] = utcnow) -> Pacer:
        settings = self.settings
        primary = min(settings.relays, key=lambda r: r.priority).host if settings.relays else None
        relay = relay_route(
            (primary or settings.smtp_host) if settings.transport == "smtp" else "folder"
        )
        return Pacer(
            database=self.database,
            relay=relay,
            relay_per_minute=float(settings.relay_per_minute),
            domain_per_minute={
                domain.lower(): float(rate) for domain, rate in settings.rate_limits.items()
            },
            slowed_per_minute=float(settings.slowed_per_minute),
            slowdown=timedelta(minutes=settings.slowdown_minutes),
            clock=clock,
        )

    def fetcher(self) -> Fetcher:
        """A new HTTP client for one fetch; the caller closes it (``with app.fetcher() as f:``)."""
        from newsletter.sources.fetch import Fetcher

        return Fetcher(
            timeout=self.settings.fetch_timeout,
            max_bytes=self.settings.max_response_bytes,
            retries=self.settings.fetch_retries,
        )

    def feed_sources(self, fetcher: Fetcher) -> list[FeedSource]:
        from newsletter.sources.feeds import FeedSource

        return [
            FeedSource(name=feed.name, url=feed.url, fetcher=fetcher)
            for feed in self.settings.feeds
        ]

    def market_source(self, fetcher: Fetcher) -> MarketSource:
        from newsletter.sources.market import MarketSource

        market = self.settings.market
        return MarketSource(
            base_url=market.base_url,
            coins=market.coins,
            vs_currency=market.vs_currency,
            fetcher=fetcher,
            api_key=market.api_key.get_secret_value() if market.api_key else None,
            top_coins=market.top_coins,
        )

    def sentiment_source(self, fetcher: Fetcher) -> SentimentSource | None:
        from newsletter.sources.market import SentimentSource

        url = self.settings.market.fear_greed_url
        return SentimentSource(url=url, fetcher=fetcher) if url else None

    def check_can_send(self) -> None:
        """Refuse real mail that would carry forgeable links or no postal address."""
        check_can_send(self.settings)

    # The services, each given exactly what it uses.

    @property
    def editions(self) -> Editions:
        return Editions(self.database, self.renderer, self.settings)

    @property
    def sending(self) -> Sending:
        return Sending(
            database=self.database,
            settings=self.settings,
            editions=self.editions,
            transport=self.transport,
            sender=self.sender,
            identity=self.identity,
        )

    @property
    def sources(self) -> Sources:
        from newsletter.services.sources import Sources

        return Sources(
            database=self.database,
            fetcher=self.fetcher,
            feeds=self.feed_sources,
            market=self.market_source,
            sentiment=self.sentiment_source,
            concurrency=self.settings.fetch_concurrency,
        )

    @property
    def worker(self) -> Worker:
        return Worker(
            database=self.database,
            transport=self.transport,
            sender=self.sender,
            outbox=self.outbox,
            webhooks=self.webhook_sender,
        )

    def webhook_sender(self, clock: Callable[[], datetime] = utcnow) -> WebhookSender:
        settings = self.settings
        return WebhookSender(
            database=self.database,
            schedule=RetrySchedule(
                first=timedelta(seconds=settings.webhook_retry_seconds),
                cap=timedelta(seconds=settings.webhook_retry_max_seconds),
            ),
            failure_limit=settings.webhook_failure_limit,
            batch_size=settings.webhook_batch_size,
            timeout=settings.webhook_timeout,
            lease=timedelta(seconds=settings.lease_seconds),
            keep=timedelta(days=settings.webhook_keep_days),
            clock=clock,
        )

    @property
    def outbox(self) -> Outbox:
        settings = self.settings
        return Outbox(
            self.database,
            utcnow,
            max_attempts=settings.outbox_max_attempts,
            lease=timedelta(seconds=settings.outbox_lease_seconds),
        )

    @property
    def mailboxes(self) -> Mailboxes:
        return Mailboxes(database=self.database, signer=self.signer)

    @property
    def pending_signups(self) -> PendingSignups:
        return PendingSignups(database=self.database, settings=self.settings)

    @property
    def demo(self) -> Demo:
        from newsletter.services.demo import Demo

        return Demo(
            database=self.database,
            settings=self.settings,
            sources=self.sources,
            editions=self.editions,
            sending=self.sending,
        )

    def close(self) -> None:
        while self._closers:
            self._closers.pop().close()
        self.database.dispose()


def bootstrap(settings: Settings) -> App:
    search_path = [settings.templates_dir] if settings.templates_dir else []
    search_path.append(templates_dir())
    return App(
        settings=settings,
        database=Database.from_url(settings.database_url),
        renderer=Renderer(search_path),
    )
