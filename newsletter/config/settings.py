"""The one typed ``Settings`` object, made of its sections, and the values derived from them."""

from __future__ import annotations

import os
from datetime import time
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from newsletter.config.delivery import DeliverySettings
from newsletter.config.edition import EditionSettings, ScheduleSettings
from newsletter.config.mail import MailSettings, StorageSettings
from newsletter.config.origins import ENV_NAMES, FILE_KEYS, config_file_values
from newsletter.config.sources import SourceSettings
from newsletter.config.web import WebSettings
from newsletter.config.webhooks import WebhookSettings


# Pydantic orders the fields from the last base to the first: storage, mail, the edition, the
# schedule, secrets and web, sources, delivery, webhooks. The order matters (a validator of the admin token
# reads ``demo``, validated before it) and is the order ``newsletter config`` prints.
class Settings(
    WebhookSettings,
    DeliverySettings,
    SourceSettings,
    WebSettings,
    ScheduleSettings,
    EditionSettings,
    MailSettings,
    StorageSettings,
    BaseSettings,
):
    """Every setting of the newsletter. See ``docs/settings.md``."""

    model_config = SettingsConfigDict(
        env_prefix="NEWSLETTER_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_values = dict(config_file_values.get() or {})
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
