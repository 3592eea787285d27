"""Settings: one typed object, read from ``NEWSLETTER_*`` environment variables and an optional TOML file.

Precedence, highest first: values passed to :func:`load_settings`, environment variables, the TOML
file named by ``--config`` or ``NEWSLETTER_CONFIG``, the defaults below. Every setting is documented in
``docs/settings.md``; ``tests/test_settings_docs.py`` fails when one is added without documentation.

Relative paths (the SQLite file, the outbox, local source files) are resolved against the current
working directory, like the defaults.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tomllib
from contextvars import ContextVar
from datetime import time
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from newsletter.errors import ConfigError

DEFAULT_SECRET_KEY = "change-me"  # noqa: S105 - the web refuses it outside demo mode

#: Shortest secret key (bytes) and admin token (characters) accepted outside the demo.
MIN_SECRET_BYTES = 32
MIN_ADMIN_TOKEN_CHARS = 32

CONFIG_ENV_VAR = "NEWSLETTER_CONFIG"

# Settings whose public name differs from the field name ("from" is a Python keyword).
ENV_NAMES = {"sender": "NEWSLETTER_FROM"}
FILE_KEYS = {"sender": "from"}

_config_file: ContextVar[dict[str, Any] | None] = ContextVar("newsletter_config_file", default=None)

TICKER_COINS = (
    "bitcoin",
    "ethereum",
    "solana",
    "binancecoin",
    "ripple",
    "cardano",
    "dogecoin",
    "polkadot",
    "avalanche-2",
    "chainlink",
    "uniswap",
    "cosmos",
    "litecoin",
    "arbitrum",
    "near",
    "filecoin",
    "sui",
)


class FeedSettings(BaseModel):
    """One RSS, Atom or RDF feed: ``[[feeds]]`` in the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1, max_length=100, description="Source name shown beside each story."
    )
    url: str = Field(description="http(s) URL of the feed, or a path to a local file.")
    max_items: int | None = Field(
        default=None, ge=1, description="Most stories this feed may contribute to one edition."
    )


class SponsorSettings(BaseModel):
    """A sponsored slot for one edition date: ``[[sponsors]]`` in the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: dt.date = Field(description="Edition date the slot runs on.")
    text: str = Field(
        min_length=1, max_length=400, description="The sponsor's message, plain text."
    )
    url: str = Field(description="https URL the slot links to.")
    label: str = Field(
        default="Sponsored",
        min_length=1,
        max_length=40,
        pattern=r"\S",
        description="Label shown above the slot; a paid placement is never unlabelled.",
    )

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://") or any(char in value for char in "\r\n <>\"'"):
            raise ValueError(f"sponsor URL {value!r} must be a plain https:// URL")
        return value


class MarketSettings(BaseModel):
    """Market data: ``[market]`` in the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        default="https://api.coingecko.com/api/v3",
        description=(
            "CoinGecko-compatible API root, or a local directory holding recorded responses "
            "(coins/markets.json, global.json)."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None, description="CoinGecko API key, sent as the x-cg-demo-api-key header."
    )
    coins: tuple[str, ...] = Field(
        default=TICKER_COINS, description="CoinGecko ids of the coins in the price table, in order."
    )
    vs_currency: str = Field(default="usd", description="Currency prices are quoted in.")
    top_coins: int = Field(
        default=100,
        ge=0,
        le=250,
        description="How many coins by market cap the top gainers and losers are drawn from (0: off).",
    )
    fear_greed_url: str | None = Field(
        default="https://api.alternative.me/fng/",
        description="Fear & Greed index endpoint, or a local recorded file; empty to leave it out.",
    )


class Settings(BaseSettings):
    """Every setting of the newsletter. See ``docs/settings.md``."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSLETTER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # storage
    database_url: str = Field(
        default="sqlite:///var/newsletter.db",
        description="SQLAlchemy URL of the database: sqlite:///PATH or postgresql+psycopg://...",
    )

    # mail
    transport: Literal["folder", "smtp"] = Field(
        default="folder", description="How mail leaves: written to a folder, or sent over SMTP."
    )
    outbox_dir: Path = Field(
        default=Path("var/outbox"),
        description="Maildir the folder transport writes messages into.",
    )
    smtp_host: str = Field(default="localhost", description="SMTP relay host.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP relay port.")
    smtp_username: str | None = Field(default=None, description="SMTP AUTH user name.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP AUTH password.")
    smtp_tls: Literal["none", "starttls", "ssl"] = Field(
        default="none", description="Transport security towards the relay."
    )
    smtp_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for the relay before giving up."
    )
    smtp_pool_size: int = Field(
        default=4, ge=1, le=64, description="SMTP connections each sending process keeps open."
    )
    sender: str = Field(
        default="Daily Crypto Insights <digest@example.com>",
        description="From header of every mail: 'Name <address>' (NEWSLETTER_FROM, 'from' in TOML).",
    )
    dkim_private_key_file: Path | None = Field(
        default=None, description="Private key that DKIM-signs every message; unset: no signing."
    )
    dkim_selector: str = Field(default="newsletter", description="DKIM selector (its DNS name).")
    dkim_domain: str | None = Field(
        default=None, description="DKIM signing domain; defaults to the From address's domain."
    )
    dkim_algorithm: Literal["rsa-sha256", "ed25519-sha256"] = Field(
        default="rsa-sha256", description="DKIM signature algorithm of the key."
    )
    return_path: str | None = Field(
        default=None,
        description="Envelope sender (bounce address); defaults to the From address.",
    )

    # the edition
    newsletter_name: str = Field(
        default="Daily Crypto Insights", description="Name shown in the masthead and subject."
    )
    base_url: str = Field(
        default="http://localhost:8000",
        description="Public URL of the web app; links in mails (unsubscribe, archive) start with it.",
    )
    list_id: str | None = Field(
        default=None,
        description="List-Id header value; defaults to 'daily.<domain of the From address>'.",
    )
    unsubscribe_mailto: str | None = Field(
        default=None,
        description="Address for mailto: unsubscribes; defaults to 'unsubscribe@<From domain>'.",
    )
    unsubscribe_mailbox: Path | None = Field(
        default=None,
        description=(
            "Maildir folder or mbox file where the unsubscribe address's mail arrives; read on a "
            "schedule by 'newsletter run'. Without it, List-Unsubscribe offers only the web link."
        ),
    )
    unsubscribe_poll_minutes: int = Field(
        default=10,
        ge=1,
        le=1440,
        description="Minutes between reads of the unsubscribe mailbox.",
    )
    postal_address: str = Field(
        default="", description="Sender's postal address shown in every mail's footer."
    )
    timezone: str = Field(default="UTC", description="IANA time zone of the editions and schedule.")
    send_time: str = Field(default="07:00", description="Default local send time, HH:MM.")
    article_count: int = Field(default=8, ge=1, le=50, description="Stories per edition.")
    per_source_cap: int = Field(
        default=3,
        ge=1,
        description="Most stories one feed gives an edition (unless it sets its own).",
    )
    max_article_age_hours: int = Field(
        default=72,
        ge=0,
        description=(
            "An edition takes stories since the previous edition (or the last 24 h), but none older "
            "than this many hours; 0 for no window at all (replaying recorded feeds)."
        ),
    )
    market_max_age_minutes: int = Field(
        default=120,
        ge=1,
        description="Prices older than this at build time are labelled with their time.",
    )
    market_max_jump_factor: float = Field(
        default=3.0,
        gt=1,
        le=1000,
        description=(
            "A price this many times higher or lower than the coin's previous reading is held "
            "(shown as n/a) until a second reading agrees with it."
        ),
    )
    templates_dir: Path | None = Field(
        default=None,
        description="Folder searched for templates before the built-in ones (to customise them).",
    )

    # schedule
    build_lead_minutes: int = Field(
        default=30,
        ge=1,
        le=720,
        description="Minutes before the earliest send that the edition is built.",
    )
    fetch_interval_minutes: int = Field(
        default=60,
        ge=5,
        le=1440,
        description="Minutes between fetches of the sources through the day.",
    )
    misfire_grace_minutes: int = Field(
        default=180,
        ge=1,
        description="How late an edition may still go out after downtime; later, it is not sent.",
    )
    deadline_minutes: int = Field(
        default=60,
        ge=1,
        description="Minutes after the earliest send when a not-yet-sent edition logs a warning.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as plain text or as JSON objects (one per line)."
    )

    # secrets and modes
    secret_key: SecretStr = Field(
        default=SecretStr(DEFAULT_SECRET_KEY),
        description="Key that signs unsubscribe, preference and confirmation tokens.",
    )
    secret_key_fallbacks: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description=(
            "Old secret keys, accepted to verify links signed before a rotation, never to sign: "
            "comma-separated or a JSON list in the environment, a list in TOML."
        ),
    )
    demo: bool = Field(
        default=False, description="Demo mode: allows the default secret key and sample data."
    )
    # web
    admin_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token of the admin API under /api, at least 32 characters outside the demo; "
            "unset or empty, the API is off and every call gets 401."
        ),
    )
    web_host: str = Field(
        default="127.0.0.1", description="Address 'newsletter web' listens on (--host overrides)."
    )
    web_port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="Port 'newsletter web' listens on (--port overrides).",
    )
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description="Reverse proxies (IP addresses or networks) whose X-Forwarded-For is believed.",
    )
    confirm_token_hours: int = Field(
        default=48, ge=1, le=720, description="Hours a confirmation link stays valid."
    )
    pending_grace_days: int = Field(
        default=7,
        ge=0,
        le=365,
        description="Days past the confirmation window before an unconfirmed signup is purged.",
    )
    confirmations_per_day: int = Field(
        default=3, ge=1, le=100, description="Most subscription mails one address gets per day."
    )
    subscribe_ip_limit: int = Field(
        default=20, ge=1, description="Subscribe requests one IP address may make per hour."
    )
    subscribe_address_limit: int = Field(
        default=5, ge=1, description="Subscribe requests for one email address per hour."
    )
    consent_wording: str = Field(
        default="2026-11",
        min_length=1,
        max_length=40,
        description="Version of the signup page's consent wording, kept with each consent record.",
    )

    # subscriber imports
    import_max_field_chars: int = Field(
        default=1000,
        ge=100,
        le=10_000_000,
        description="Longest field of a subscriber import file, in characters.",
    )
    import_max_line_chars: int = Field(
        default=10_000,
        ge=1000,
        le=100_000_000,
        description="Longest line of a subscriber import file, in characters.",
    )

    # sources
    feeds: tuple[FeedSettings, ...] = Field(
        default=(), description="News feeds, as [[feeds]] tables in the TOML file."
    )
    market: MarketSettings = Field(
        default_factory=MarketSettings, description="Market data source, [market] in the file."
    )
    fetch_timeout: float = Field(
        default=15.0, gt=0, description="Seconds a source may take to answer."
    )
    fetch_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of a source after HTTP 429 or 5xx (Retry-After is honoured).",
    )
    fetch_concurrency: int = Field(
        default=8, ge=1, le=64, description="Sources fetched at the same time."
    )
    show_images: bool = Field(
        default=False,
        description="Show the stories' pictures (remote https images) in the HTML edition.",
    )
    sponsors: tuple[SponsorSettings, ...] = Field(
        default=(), description="Sponsored slots, as [[sponsors]] tables in the TOML file."
    )
    max_response_bytes: int = Field(
        default=5_000_000, ge=1024, description="Largest source response read, in bytes."
    )

    # delivery
    batch_size: int = Field(
        default=200, ge=1, le=10_000, description="Deliveries a worker claims at once."
    )
    flush_size: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Sent marks written per database transaction; a crash re-sends at most these.",
    )
    lease_seconds: int = Field(
        default=300, ge=10, description="Seconds a claimed batch stays reserved for its worker."
    )
    max_attempts: int = Field(
        default=8, ge=1, description="Tries before a temporarily failing delivery is failed."
    )
    relay_per_minute: int = Field(
        default=0,
        ge=0,
        description="Most messages per minute to the SMTP relay, all workers together (0: no limit).",
    )
    rate_limits: dict[str, int] = Field(
        default_factory=dict,
        description="Most messages per minute per recipient domain, all workers together: [rate_limits] table.",
    )
    slowdown_minutes: int = Field(
        default=10, ge=1, description="How long a route stays slowed after it answered 421 or 451."
    )
    slowed_per_minute: int = Field(
        default=60, ge=1, description="Rate of a slowed route that has no configured limit."
    )
    retry_hours: int = Field(
        default=24,
        ge=1,
        description="Hours after which a temporarily failing delivery is failed, whatever its tries.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin"
            ) from exc
        return value

    @field_validator("send_time")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        if not re.fullmatch(r"\d{2}:\d{2}", value):
            raise ValueError(f"send time {value!r} is not HH:MM")
        hour, minute = (int(part) for part in value.split(":"))
        if hour > 23 or minute > 59:
            raise ValueError(f"send time {value!r} is not a time of day")
        return value

    @field_validator("sender")
    @classmethod
    def _has_address(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            raise ValueError(f"{value!r} has no email address; write 'Name <address@domain>'")
        if "\r" in value or "\n" in value:
            raise ValueError("the From address must be on one line")
        return value

    @field_validator("secret_key_fallbacks", mode="before")
    @classmethod
    def _key_list(cls, value: Any) -> Any:
        """From the environment: ``old1,old2`` or a JSON list; from TOML: a list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"is not a JSON list: {exc.msg}") from None
            else:
                value = text.split(",")
        if isinstance(value, list | tuple):
            return tuple(
                item.strip() if isinstance(item, str) else item
                for item in value
                if not (isinstance(item, str) and not item.strip())
            )
        return value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: Any) -> Any:
        """``NEWSLETTER_ADMIN_TOKEN=`` (set but empty) turns the API off, like leaving it unset."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or (isinstance(text, str) and not text.strip()):
            return None
        return value

    @field_validator("admin_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or info.data.get("demo", False):
            return value
        length = len(value.get_secret_value())
        if length < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"is {length} characters long; outside the demo it must be at least "
                f"{MIN_ADMIN_TOKEN_CHARS} characters (e.g. from 'openssl rand -hex 32'), or unset to turn "
                "the admin API off"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base URL {value!r} must start with http:// or https://")
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_values = dict(_config_file.get() or {})
        for field, key in FILE_KEYS.items():
            if key in file_values:
                file_values[field] = file_values.pop(key)
        renamed = {
            field: os.environ[name] for field, name in ENV_NAMES.items() if name in os.environ
        }
        return (
            init_settings,
            InitSettingsSource(settings_cls, renamed),
            env_settings,
            InitSettingsSource(settings_cls, file_values),
        )

    # derived values

    @property
    def from_address(self) -> str:
        """The bare address of the From header."""
        return parseaddr(self.sender)[1]

    @property
    def sender_domain(self) -> str:
        return self.from_address.rpartition("@")[2]

    @property
    def envelope_sender(self) -> str:
        return self.return_path or self.from_address

    @property
    def list_id_value(self) -> str:
        return self.list_id or f"daily.{self.sender_domain}"

    @property
    def unsubscribe_address(self) -> str:
        return self.unsubscribe_mailto or f"unsubscribe@{self.sender_domain}"

    @property
    def advertised_unsubscribe_mailto(self) -> str | None:
        """The mailto: address List-Unsubscribe offers: only when its mailbox is read."""
        return self.unsubscribe_address if self.unsubscribe_mailbox is not None else None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def send_clock(self) -> time:
        hour, minute = (int(part) for part in self.send_time.split(":"))
        return time(hour, minute)

    def redacted(self) -> dict[str, Any]:
        """Settings as plain data with secrets masked, for ``newsletter config``."""
        return self.model_dump(mode="json")


def check_secret_keys(settings: Settings) -> None:
    """Outside the demo, refuse a signing key that is the default or shorter than 32 bytes.

    Such a key would make every signed link (confirm, unsubscribe, preferences) forgeable or
    guessable, so the web app does not start and nothing is sent over SMTP with it.
    """
    if settings.demo:
        return
    hint = "set NEWSLETTER_SECRET_KEY to a long random value, e.g. from 'openssl rand -hex 32'"
    key = settings.secret_key.get_secret_value()
    if key == DEFAULT_SECRET_KEY:
        raise ConfigError(
            f"NEWSLETTER_SECRET_KEY is the default; outside the demo it must be a random value of "
            f"at least {MIN_SECRET_BYTES} bytes, or signed links (confirm, unsubscribe, "
            "preferences) would be forgeable",
            hint=hint,
        )
    size = len(key.encode())
    if size < MIN_SECRET_BYTES:
        raise ConfigError(
            f"NEWSLETTER_SECRET_KEY is {size} bytes long; outside the demo it must be at least "
            f"{MIN_SECRET_BYTES} bytes, or signed links (confirm, unsubscribe, preferences) "
            "could be guessed",
            hint=hint,
        )
    for number, fallback in enumerate(settings.secret_key_fallbacks, start=1):
        size = len(fallback.get_secret_value().encode())
        if fallback.get_secret_value() == DEFAULT_SECRET_KEY or size < MIN_SECRET_BYTES:
            raise ConfigError(
                f"NEWSLETTER_SECRET_KEY_FALLBACKS: key {number} is the default or shorter than "
                f"{MIN_SECRET_BYTES} bytes; links it signed could be forged by anyone who guesses it",
                hint="remove that key from NEWSLETTER_SECRET_KEY_FALLBACKS",
            )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} does not exist",
            hint=f"check --config or {CONFIG_ENV_VAR}",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from the environment, the TOML file and ``overrides``.

    ``config_file`` defaults to ``$NEWSLETTER_CONFIG``. Raises :class:`ConfigError` with every invalid
    value named when the settings do not validate.
    """
    path = config_file or os.environ.get(CONFIG_ENV_VAR) or None
    file_values = _read_toml(Path(path)) if path else {}
    token = _config_file.set(file_values)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        where = f" (file {path})" if path else ""
        raise ConfigError(f"invalid settings{where}: {problems}") from None
    finally:
        _config_file.reset(token)


def env_name(field: str) -> str:
    """The environment variable of a top-level setting."""
    return ENV_NAMES.get(field, f"NEWSLETTER_{field.upper()}")


def _describe(error: Any) -> str:
    location = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "extra_forbidden":
        return f"unknown setting {'.'.join(location)!r} (see docs/settings.md for the names)"
    name = env_name(location[0]) if location else "settings"
    if len(location) > 1:
        name += "__" + "__".join(part.upper() for part in location[1:])
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{name}: {message}"
