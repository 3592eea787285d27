"""What a subscriber chooses to receive: coins, sections, send hour and time zone, format, pause.

Choices are stored on the subscriber row and apply from the next edition. ``None`` means "the default"
for the watchlist (the newsletter's coins) and for sections (all of them), so that a subscriber who
never changed anything follows changes of the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from subscribers.errors import InvalidPreferences, SubscriberError
from subscribers.model import MailFormat, Subscriber
from subscribers.service import check_timezone

#: The sections of an edition a subscriber can choose, in the order they appear.
SECTIONS = ("market", "movers", "stories")

SECTION_LABELS = {
    "market": "Market prices and summary",
    "movers": "Top movers",
    "stories": "Top stories",
}

MAX_FIELD_LENGTH = 100


@dataclass(frozen=True, slots=True)
class Preferences:
    watchlist: tuple[str, ...] | None
    sections: tuple[str, ...] | None
    send_hour: int | None
    timezone: str | None
    format: MailFormat
    paused: bool


def current(subscriber: Subscriber) -> Preferences:
    return Preferences(
        watchlist=tuple(subscriber.watchlist) if subscriber.watchlist is not None else None,
        sections=tuple(subscriber.sections) if subscriber.sections is not None else None,
        send_hour=subscriber.send_hour,
        timezone=subscriber.timezone,
        format=subscriber.format,
        paused=bool(subscriber.paused),
    )


def _one(values: Mapping[str, Sequence[str]], name: str) -> str:
    found = values.get(name) or []
    value = found[-1] if found else ""
    if len(value) > MAX_FIELD_LENGTH or any(char in value for char in "\r\n\x00"):
        raise InvalidPreferences({name: "this value is not allowed"})
    return value.strip()


def check_watchlist(
    picked: Sequence[str], *, coins: Sequence[str], default: Sequence[str]
) -> tuple[str, ...] | None:
    """The watchlist of these picks, in the order of ``coins`` (the coins one may follow); None
    when the picks are the newsletter's own coins (the default). ``InvalidPreferences`` names any
    coin not in ``coins`` and refuses an empty choice."""
    allowed = set(coins)
    chosen = {coin for coin in picked if coin}
    unknown = sorted(coin for coin in chosen if coin not in allowed)
    if unknown:
        shown = ", ".join(repr(coin[:MAX_FIELD_LENGTH]) for coin in unknown[:5])
        raise InvalidPreferences(
            {
                "watchlist": f"unknown coin {shown}: choose coins from the list (the top coins "
                "by market cap)"
                if len(unknown) == 1
                else f"unknown coins {shown}: choose coins from the list (the top coins by "
                "market cap)"
            }
        )
    if not chosen:
        raise InvalidPreferences(
            {"watchlist": "choose at least one coin (or leave out the market section)"}
        )
    if chosen == set(default):
        return None
    return tuple(coin for coin in dict.fromkeys(coins) if coin in chosen)


def parse_form(
    values: Mapping[str, Sequence[str]],
    *,
    coins: Sequence[str],
    default: Sequence[str] | None = None,
) -> Preferences:
    """Read the preferences form (``watchlist`` and ``sections`` repeated, the rest single).

    ``coins`` are the coins a subscriber may pick, in display order; ``default`` the newsletter's
    own (all of ``coins`` when not given): picking exactly those stores "the default". Every problem
    is reported at once, by field.
    """
    problems: dict[str, str] = {}
    watchlist: tuple[str, ...] | None = None
    try:
        watchlist = check_watchlist(
            values.get("watchlist", []), coins=coins, default=coins if default is None else default
        )
    except InvalidPreferences as exc:
        problems.update(exc.problems)

    picked_sections = [value for value in values.get("sections", []) if value]
    sections: tuple[str, ...] | None = None
    if any(section not in SECTIONS for section in picked_sections):
        problems["sections"] = "choose sections from the list"
    elif not picked_sections:
        problems["sections"] = "choose at least one section, or pause the newsletter"
    else:
        chosen_sections = set(picked_sections)
        sections = (
            None
            if chosen_sections == set(SECTIONS)
            else tuple(s for s in SECTIONS if s in chosen_sections)
        )

    send_hour: int | None = None
    timezone: str | None = None
    mail_format = MailFormat.HTML
    try:
        hour_text = _one(values, "send_hour")
        if hour_text:
            if not hour_text.isdigit() or not 0 <= int(hour_text) <= 23:
                problems["send_hour"] = "choose an hour between 0 and 23"
            else:
                send_hour = int(hour_text)
    except InvalidPreferences as exc:
        problems.update(exc.problems)
    try:
        timezone = check_timezone(_one(values, "timezone"))
    except InvalidPreferences as exc:
        problems.update(exc.problems)
    except SubscriberError:
        problems["timezone"] = "choose a time zone from the list"
    try:
        format_text = _one(values, "format") or MailFormat.HTML.value
        mail_format = MailFormat(format_text)
    except InvalidPreferences as exc:
        problems.update(exc.problems)
    except ValueError:
        problems["format"] = "choose HTML or plain text"
    paused = bool([value for value in values.get("paused", []) if value])

    if problems:
        raise InvalidPreferences(problems)
    return Preferences(
        watchlist=watchlist,
        sections=sections,
        send_hour=send_hour,
        timezone=timezone,
        format=mail_format,
        paused=paused,
    )


def apply(subscriber: Subscriber, preferences: Preferences) -> bool:
    """Store ``preferences`` on the row; return whether anything changed."""
    before = current(subscriber)
    subscriber.watchlist = (
        list(preferences.watchlist) if preferences.watchlist is not None else None
    )
    subscriber.sections = list(preferences.sections) if preferences.sections is not None else None
    subscriber.send_hour = preferences.send_hour
    subscriber.timezone = preferences.timezone
    subscriber.format = preferences.format
    subscriber.paused = preferences.paused
    return before != preferences
