"""The web's and the subscribers' settings: signing keys and modes, the web app and its limits,
subscriber imports; and the check that refuses a guessable signing key."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from newsletter.errors import ConfigError

DEFAULT_SECRET_KEY = "change-me"  # noqa: S105 - the web refuses it outside demo mode

#: Shortest secret key (bytes) and admin token (characters) accepted outside the demo.
MIN_SECRET_BYTES = 32
MIN_ADMIN_TOKEN_CHARS = 32


class WebSettings(BaseModel):
    """Secrets and modes, the web app, signups and subscriber imports."""

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
    webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Secret of POST /api/webhooks/bounces (bearer token or basic-auth password), at least "
            "32 characters outside the demo; unset or empty, the endpoint is off (404)."
        ),
    )
    webhook_confirm_sns: bool = Field(
        default=False,
        description=(
            "Confirm an Amazon SNS subscription to the bounce webhook by fetching its SubscribeURL "
            "(only an https URL on sns.<region>.amazonaws.com); off, the URL is logged to visit."
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

    @field_validator("admin_token", "webhook_secret", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: Any) -> Any:
        """``NEWSLETTER_ADMIN_TOKEN=`` (set but empty) turns the API off, like leaving it unset."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or (isinstance(text, str) and not text.strip()):
            return None
        return value

    @field_validator("admin_token", "webhook_secret")
    @classmethod
    def _long_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or info.data.get("demo", False):
            return value
        length = len(value.get_secret_value())
        if length < MIN_ADMIN_TOKEN_CHARS:
            what = "the admin API" if info.field_name == "admin_token" else "the bounce webhook"
            raise ValueError(
                f"is {length} characters long; outside the demo it must be at least "
                f"{MIN_ADMIN_TOKEN_CHARS} characters (e.g. from 'openssl rand -hex 32'), or unset to turn "
                f"{what} off"
            )
        return value


def check_secret_keys(settings: WebSettings) -> None:
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
