"""Which coins may be the day's top gainers and losers: coins in their own right, not mirrors.

A stablecoin (pegged to a currency or to gold) and a wrapped, staked or bridged token that only tracks
another coin move with what they mirror, so they never tell a reader anything as a "mover". The
rules, in order; any one that matches leaves the coin out:

1. the symbol is a known stablecoin or asset-pegged token (``PEGGED``);
2. the symbol contains ``USD`` or ``EUR`` (USDT, USDC, PYUSD, FDUSD, sUSDe, USD1, EURC, ...);
3. the name or the id says so: the words wrapped, staked, bridged, restaked or liquid staking, or a
   name ending in " USD";
4. the symbol is a major coin's symbol with a prefix (``W``, ``ST``, ``CB``, ``WST``, ``WE``, ``R``,
   ``JITO``, ``M`` ... before BTC, ETH or SOL: WBTC, STETH, CBBTC, WSTETH, WEETH, RETH, JITOSOL).

The rules look only at the id, symbol and name the market data gives; no per-coin guesses.
"""

from __future__ import annotations

import re

#: Stablecoins and asset-pegged tokens whose symbol does not say so.
PEGGED = frozenset(
    {"DAI", "FRAX", "LUSD", "GHO", "USDS", "TUSD", "BUSD", "PAXG", "XAUT", "EURS", "EURC", "RAI"}
)
#: Coins that others wrap, stake or bridge.
MAJORS = ("BTC", "ETH", "SOL")

_FIAT_SYMBOL = re.compile(r"USD|EUR", re.IGNORECASE)
_MIRROR_WORDS = re.compile(
    r"\b(wrapped|staked|bridged|restaked|liquid staking)\b|\bUSD$|-peg\b", re.IGNORECASE
)


def is_mirror(coin_id: str, symbol: str, name: str) -> bool:
    """Whether a coin only mirrors another asset (a stablecoin or a derivative token)."""
    upper = symbol.upper()
    if upper in PEGGED or _FIAT_SYMBOL.search(upper):
        return True
    if _MIRROR_WORDS.search(name) or _MIRROR_WORDS.search(coin_id.replace("-", " ")):
        return True
    return any(upper.endswith(major) and len(upper) > len(major) for major in MAJORS)
