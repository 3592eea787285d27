"""The sources' settings: feeds, market data, sponsored slots, and how sources are fetched."""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

TICKER_COINS = (
    "bitcoin",
    "ethereum",
    "solana",
    "binancecoin",
    "ripple",
    "cardano",
    "dogecoin",
    "polkadot",
    "avalanche-2",
    "chainlink",
    "uniswap",
    "cosmos",
    "litecoin",
    "arbitrum",
    "near",
    "filecoin",
    "sui",
)


def rule_pattern(rule: str) -> re.Pattern[str]:
    """A feed's ``include`` / ``exclude`` rule as a pattern searched in a story's title and summary.

    ``/.../`` is a regular expression (Python syntax, case-insensitive); anything else is a word or
    phrase, matched case-insensitively as whole words (``ETF`` matches "ETF" and "etf", not
    "ETFs"; the spaces of a phrase match any spacing). Raises ``ValueError`` for a bad rule.
    """
    text = rule.strip()
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        expression = text[1:-1]
        if not expression:
            raise ValueError("the regular expression between the slashes is empty")
        try:
            return re.compile(expression, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    words = text.split()
    if not words:
        raise ValueError("a rule may not be empty")
    phrase = r"\s+".join(re.escape(word) for word in words)
    return re.compile(rf"(?<!\w){phrase}(?!\w)", re.IGNORECASE)


class FeedSettings(BaseModel):
    """One RSS, Atom or RDF feed: ``[[feeds]]`` in the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1, max_length=100, description="Source name shown beside each story."
    )
    url: str = Field(description="http(s) URL of the feed, or a path to a local file.")
    max_items: int | None = Field(
        default=None, ge=1, description="Most stories this feed may contribute to one edition."
    )
    include: tuple[str, ...] = Field(
        default=(),
        description=(
            "Rules a story must match (any one of them) in its title or summary to be taken: "
            "words or phrases, or regular expressions written between slashes."
        ),
    )
    exclude: tuple[str, ...] = Field(
        default=(),
        description=(
            "Rules that leave a story out when its title or summary matches any of them: words "
            "or phrases, or regular expressions written between slashes."
        ),
    )
    priority: int = Field(
        default=0,
        ge=-100,
        le=100,
        description=(
            "Higher goes first: when the edition is full the stories of lower-priority feeds are "
            "left out, and a story carried by several feeds is taken from the highest."
        ),
    )

    @model_validator(mode="after")
    def _rules(self) -> FeedSettings:
        for kind in ("include", "exclude"):
            for rule in getattr(self, kind):
                try:
                    rule_pattern(rule)
                except ValueError as exc:
                    raise ValueError(
                        f"feed {self.name!r}: {kind} rule {rule!r}: {exc} (a regular expression "
                        "is written between slashes, e.g. '/\\bETFs?\\b/'; anything else is "
                        "matched as words)"
                    ) from None
        return self


class SponsorSettings(BaseModel):
    """A sponsored slot for one edition date: ``[[sponsors]]`` in the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    date: dt.date = Field(description="Edition date the slot runs on.")
    text: str = Field(
        min_length=1, max_length=400, description="The sponsor's message, plain text."
    )
    url: str = Field(description="https URL the slot links to.")
    label: str = Field(
        default="Sponsored",
        min_length=1,
        max_length=40,
        pattern=r"\S",
        description="Label shown above the slot; a paid placement is never unlabelled.",
    )

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://") or any(char in value for char in "\r\n <>\"'"):
            raise ValueError(f"sponsor URL {value!r} must be a plain https:// URL")
        return value


class MarketSettings(BaseModel):
    """Market data: ``[market]`` in the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        default="https://api.coingecko.com/api/v3",
        description=(
            "CoinGecko-compatible API root, or a local directory holding recorded responses "
            "(coins/markets.json, global.json)."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None, description="CoinGecko API key, sent as the x-cg-demo-api-key header."
    )
    coins: tuple[str, ...] = Field(
        default=TICKER_COINS, description="CoinGecko ids of the coins in the price table, in order."
    )
    vs_currency: str = Field(default="usd", description="Currency prices are quoted in.")
    top_coins: int = Field(
        default=100,
        ge=0,
        le=250,
        description="How many coins by market cap the top gainers and losers are drawn from, "
        "and readers may follow besides the newsletter's coins (0: off).",
    )
    fear_greed_url: str | None = Field(
        default="https://api.alternative.me/fng/",
        description="Fear & Greed index endpoint, or a local recorded file; empty to leave it out.",
    )


class SourceSettings(BaseModel):
    """Where the stories and the prices come from, and how they are fetched."""

    feeds: tuple[FeedSettings, ...] = Field(
        default=(), description="News feeds, as [[feeds]] tables in the TOML file."
    )
    market: MarketSettings = Field(
        default_factory=MarketSettings, description="Market data source, [market] in the file."
    )
    fetch_timeout: float = Field(
        default=15.0, gt=0, description="Seconds a source may take to answer."
    )
    fetch_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Retries of a source after HTTP 429 or 5xx (Retry-After is honoured).",
    )
    fetch_concurrency: int = Field(
        default=8, ge=1, le=64, description="Sources fetched at the same time."
    )
    show_images: bool = Field(
        default=False,
        description="Show the stories' pictures (remote https images) in the HTML edition.",
    )
    sponsors: tuple[SponsorSettings, ...] = Field(
        default=(), description="Sponsored slots, as [[sponsors]] tables in the TOML file."
    )
    sponsor_click_counts: bool = Field(
        default=False,
        description=(
            "Count clicks on sponsor placements per placement and edition, through a signed "
            "first-party redirect that records nothing about the reader; off: links go straight "
            "to the sponsor."
        ),
    )
    max_response_bytes: int = Field(
        default=5_000_000, ge=1024, description="Largest source response read, in bytes."
    )
