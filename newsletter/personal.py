"""The personal parts of a mail: tokens in the rendered edition, and the links that replace them.

An edition is rendered once per variant with these tokens in place of the recipient's address and
personal links; each message fills them in (see ``newsletter.delivery.message``). The tokens use only
letters and underscores, so that HTML serialisation and CSS inlining leave them intact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

EMAIL = "__NL_EMAIL__"
UNSUBSCRIBE_URL = "__NL_UNSUBSCRIBE_URL__"
PREFERENCES_URL = "__NL_PREFERENCES_URL__"

TOKENS = (EMAIL, UNSUBSCRIBE_URL, PREFERENCES_URL)


@dataclass(frozen=True, slots=True)
class Links:
    """The public URLs of the web app (see ``newsletter.web``)."""

    base_url: str

    def unsubscribe(self, token: str) -> str:
        return f"{self.base_url}/unsubscribe/{token}"

    def preferences(self, token: str) -> str:
        return f"{self.base_url}/preferences/{token}"

    def archive(self, edition_date: date) -> str:
        return f"{self.base_url}/archive/{edition_date.isoformat()}"

    def home(self) -> str:
        return f"{self.base_url}/"


def public_values(links: Links) -> dict[str, str]:
    """Token values for a copy anyone may see (archive, preview): no personal data."""
    return {
        EMAIL: "you",
        UNSUBSCRIBE_URL: f"{links.base_url}/unsubscribe",
        PREFERENCES_URL: f"{links.base_url}/preferences",
    }


def fill(text: str, values: Mapping[str, str]) -> str:
    """Replace every token in ``text`` (a preview, the web version); mail uses prebuilt bytes."""
    for token, value in values.items():
        text = text.replace(token, value)
    return text
