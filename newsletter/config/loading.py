"""Loading the settings: the TOML file, then one :class:`ConfigError` naming every invalid value."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from newsletter.config.origins import CONFIG_ENV_VAR, config_file_values, env_name
from newsletter.config.settings import Settings
from newsletter.errors import ConfigError


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
    token = config_file_values.set(file_values)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        where = f" (file {path})" if path else ""
        raise ConfigError(f"invalid settings{where}: {problems}") from None
    finally:
        config_file_values.reset(token)


def _describe(error: Any) -> str:
    location = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "extra_forbidden":
        return f"unknown setting {'.'.join(location)!r} (see docs/settings.md for the names)"
    name = env_name(location[0]) if location else "settings"
    if len(location) > 1:
        name += "__" + "__".join(part.upper() for part in location[1:])
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{name}: {message}"
