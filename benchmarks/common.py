"""What the benchmarks share: the personal values of a sample recipient."""

from __future__ import annotations

from newsletter import personal
from newsletter.delivery.message import DATE, MESSAGE_ID, RECIPIENT, UNSUBSCRIBE_MAILTO


def sample_values(number: int) -> dict[str, str]:
    """The slot values of recipient ``number``, as the sender fills them in."""
    address = f"reader{number}@example.com"
    url = f"https://crypto.example.com/unsubscribe/token-{number:08d}"
    return {
        RECIPIENT: address,
        DATE: "Tue, 24 Nov 2026 07:00:00 +0000",
        MESSAGE_ID: f"<20261124.{number}.abcdef@example.com>",
        UNSUBSCRIBE_MAILTO: f"token-{number:08d}",
        personal.EMAIL: address,
        personal.UNSUBSCRIBE_URL: url,
        personal.PREFERENCES_URL: url.replace("unsubscribe", "preferences"),
    }
