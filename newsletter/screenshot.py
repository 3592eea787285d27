"""Screenshots of an edition in headless Chromium (Debian's package, driven by Playwright).

Operators look at these before a send; the tests use the same code to check the layout does not
overflow on a phone. No browser is downloaded: the system's chromium is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.errors import NewsletterError

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WIDTHS = (600, 375)
#: Debian's chromium package.
CHROMIUM = "/usr/bin/chromium"


@dataclass(frozen=True, slots=True)
class Shot:
    width: int
    path: Path
    #: How many CSS pixels the page is wider than the viewport (0: nothing overflows).
    overflow: int


def screenshots(
    html_file: Path, *, widths: tuple[int, ...] = WIDTHS, chromium: str | None = None
) -> list[Shot]:
    """Full-page PNGs of ``html_file`` at each width, written beside it as NAME-WIDTH.png.

    ``chromium`` is the browser's executable (default: :data:`CHROMIUM`).
    """
    chromium = chromium or CHROMIUM
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise NewsletterError(
            "screenshots need the playwright package",
            hint="install it with: pip install 'newsletter[preview]' (and Debian's chromium)",
        ) from None
    if not Path(chromium).exists():
        raise NewsletterError(
            f"no Chromium at {chromium}",
            hint="install Debian's chromium package (apt-get install chromium)",
        )
    shots = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
            try:
                for width in widths:
                    page = browser.new_page(viewport={"width": width, "height": 900})
                    page.route("**/*", _offline)
                    page.goto(html_file.resolve().as_uri(), wait_until="load")
                    overflow = int(
                        page.evaluate(
                            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                        )
                    )
                    target = html_file.with_name(f"{html_file.stem}-{width}.png")
                    page.screenshot(path=str(target), full_page=True)
                    page.close()
                    shots.append(Shot(width=width, path=target, overflow=max(overflow, 0)))
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise NewsletterError(f"Chromium could not render {html_file}: {exc.message}") from None
    return shots


def _offline(route: object) -> None:
    """Load the edition itself; block remote images and anything else (no network here)."""
    request = route.request  # type: ignore[attr-defined]
    if request.url.startswith("file://"):
        route.continue_()  # type: ignore[attr-defined]
    else:
        route.abort()  # type: ignore[attr-defined]
