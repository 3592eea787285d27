"""Settings: one typed object, read from ``NEWSLETTER_*`` environment variables and an optional TOML file.

Precedence, highest first: values passed to :func:`load_settings`, environment variables, the TOML
file named by ``--config`` or ``NEWSLETTER_CONFIG``, the defaults. Every setting is documented in
``docs/settings.md``; ``tests/test_settings_docs.py`` fails when one is added without documentation.

Relative paths (the SQLite file, the outbox, local source files) are resolved against the current
working directory, like the defaults.

The settings are declared by concern (``mail``, ``edition``, ``web``, ``sources``, ``delivery``) and
put together in ``settings``; this package's names below are its API.
"""

from newsletter.config.loading import load_settings
from newsletter.config.mail import RelaySettings
from newsletter.config.origins import CONFIG_ENV_VAR, ENV_NAMES, FILE_KEYS, env_name
from newsletter.config.settings import Settings
from newsletter.config.sources import (
    TICKER_COINS,
    FeedSettings,
    MarketSettings,
    SponsorSettings,
    rule_pattern,
)
from newsletter.config.web import (
    DEFAULT_SECRET_KEY,
    MIN_ADMIN_TOKEN_CHARS,
    MIN_SECRET_BYTES,
    check_secret_keys,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_SECRET_KEY",
    "ENV_NAMES",
    "FILE_KEYS",
    "MIN_ADMIN_TOKEN_CHARS",
    "MIN_SECRET_BYTES",
    "TICKER_COINS",
    "FeedSettings",
    "MarketSettings",
    "RelaySettings",
    "Settings",
    "SponsorSettings",
    "check_secret_keys",
    "env_name",
    "load_settings",
    "rule_pattern",
]
