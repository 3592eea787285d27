"""The edition's settings: its name and links, its time zone and send time, what it shows, and
the schedule that builds and sends it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator


class EditionSettings(BaseModel):
    """What an edition is called, where its links point, when it goes out and what it holds."""

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
    story_repeat_days: int = Field(
        default=7,
        ge=0,
        le=60,
        description=(
            "A story whose title is close to one sent in the editions of this many days before is "
            "a repeat and is left out; 0 switches the check off."
        ),
    )
    story_repeat_threshold: float = Field(
        default=95.0,
        ge=50,
        le=100,
        description=(
            "How close (0-100, rapidfuzz similarity of the folded titles) a title must be to a "
            "recent one to count as a repeat."
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

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base URL {value!r} must start with http:// or https://")
        return value.rstrip("/")


class ScheduleSettings(BaseModel):
    """When the scheduler fetches, builds and warns."""

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
