"""Where the templates and migrations are: inside the installed wheel, or beside the package in a
source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    inside = _PACKAGE / name
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / name


def templates_dir() -> Path:
    return _shipped("templates")


def migrations_dir() -> Path:
    return _shipped("migrations")
