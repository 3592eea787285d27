"""Sources: news feeds and market data, over HTTP or from local recorded files."""

from newsletter.sources.feeds import FeedItem, FeedSource
from newsletter.sources.market import CoinQuote, MarketSource

__all__ = ["CoinQuote", "FeedItem", "FeedSource", "MarketSource"]
