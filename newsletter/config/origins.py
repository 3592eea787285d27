"""Where settings come from besides defaults: the environment and the TOML file."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

CONFIG_ENV_VAR = "NEWSLETTER_CONFIG"

# Settings whose public name differs from the field name ("from" is a Python keyword).
ENV_NAMES = {"sender": "NEWSLETTER_FROM"}
FILE_KEYS = {"sender": "from"}

#: The values of the TOML file being loaded (set by ``load_settings`` while it builds the settings).
config_file_values: ContextVar[dict[str, Any] | None] = ContextVar(
    "newsletter_config_file", default=None
)


def env_name(field: str) -> str:
    """The environment variable of a top-level setting."""
    return ENV_NAMES.get(field, f"NEWSLETTER_{field.upper()}")
