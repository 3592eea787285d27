"""Every setting is documented in docs/settings.md, and the docs name no setting that is gone."""

from __future__ import annotations

import re
from pathlib import Path

from newsletter.config import (
    CONFIG_ENV_VAR,
    FeedSettings,
    MarketSettings,
    RelaySettings,
    Settings,
    SponsorSettings,
    env_name,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def documented() -> set[str]:
    return set(re.findall(r"^### `([^`]+)`", DOCS.read_text(encoding="utf-8"), re.MULTILINE))


def expected() -> set[str]:
    names = {env_name(field) for field in Settings.model_fields}
    names |= {f"NEWSLETTER_MARKET__{field.upper()}" for field in MarketSettings.model_fields}
    names |= {f"feeds.{field}" for field in FeedSettings.model_fields}
    names |= {f"sponsors.{field}" for field in SponsorSettings.model_fields}
    names |= {f"relays.{field}" for field in RelaySettings.model_fields}
    return names | {CONFIG_ENV_VAR}


def test_every_setting_is_documented() -> None:
    missing = expected() - documented()
    assert not missing, f"add a section to docs/settings.md for: {sorted(missing)}"


def test_docs_name_no_unknown_setting() -> None:
    stale = documented() - expected()
    assert not stale, f"docs/settings.md documents settings that do not exist: {sorted(stale)}"


def test_every_setting_has_a_description() -> None:
    for model in (Settings, MarketSettings, FeedSettings, SponsorSettings, RelaySettings):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
