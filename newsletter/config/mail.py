"""The mail settings: the transport (folder or SMTP), the From address, DKIM and the envelope."""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class StorageSettings(BaseModel):
    """Where everything is kept."""

    database_url: str = Field(
        default="sqlite:///var/newsletter.db",
        description="SQLAlchemy URL of the database: sqlite:///PATH or postgresql+psycopg://...",
    )


class RelaySettings(BaseModel):
    """One SMTP relay among several: ``[[relays]]`` in the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=255, description="SMTP relay host.")
    port: int = Field(default=25, ge=1, le=65535, description="SMTP relay port.")
    priority: int = Field(
        default=0,
        ge=0,
        description="Relays are tried from the lowest priority number up (like MX preferences).",
    )
    username: str | None = Field(default=None, description="SMTP AUTH user name.")
    password: SecretStr | None = Field(default=None, description="SMTP AUTH password.")
    password_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of an environment variable holding the SMTP AUTH password instead.",
    )
    tls: Literal["none", "starttls", "ssl"] = Field(
        default="none", description="Transport security towards this relay."
    )
    timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for this relay before giving up."
    )
    max_connections: int = Field(
        default=4, ge=1, le=64, description="SMTP connections each sending process keeps open."
    )

    @field_validator("host")
    @classmethod
    def _plain_host(cls, value: str) -> str:
        if any(char.isspace() for char in value):
            raise ValueError(f"relay host {value!r} contains white space")
        return value


class MailSettings(BaseModel):
    """How mail leaves, and who it is from."""

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
    relays: list[RelaySettings] = Field(
        default_factory=list,
        description="Several SMTP relays with failover, as [[relays]] tables; replace smtp_host and the rest.",
    )
    relay_cooldown_seconds: int = Field(
        default=120,
        ge=1,
        le=86_400,
        description="Seconds a relay that is unreachable or answered 421 is passed over.",
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
    dkim_canonicalization: Literal[
        "relaxed/simple", "relaxed/relaxed", "simple/simple", "simple/relaxed"
    ] = Field(
        default="relaxed/simple",
        description="DKIM canonicalisation (c=): header/body, each relaxed or simple.",
    )
    dkim_ed25519_private_key_file: Path | None = Field(
        default=None,
        description="A second DKIM key, Ed25519, signing beside the first (RFC 8463); unset: one signature.",
    )
    dkim_ed25519_selector: str | None = Field(
        default=None, description="DKIM selector of the Ed25519 key; required with its key file."
    )
    return_path: str | None = Field(
        default=None,
        description="Envelope sender (bounce address); defaults to the From address.",
    )

    @field_validator("sender")
    @classmethod
    def _has_address(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            raise ValueError(f"{value!r} has no email address; write 'Name <address@domain>'")
        if "\r" in value or "\n" in value:
            raise ValueError("the From address must be on one line")
        return value
