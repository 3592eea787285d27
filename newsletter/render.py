"""Rendering an edition: Jinja2 templates to HTML and text, CSS inlined once by premailer."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from newsletter import personal
from newsletter.digest import Digest
from newsletter.errors import RenderError
from newsletter.formatting import format_change, format_price

log = logging.getLogger(__name__)

HTML_TEMPLATE = "issue.html.j2"
TEXT_TEMPLATE = "issue.txt.j2"
#: Gmail clips messages whose HTML is larger than this; editions stay below it.
GMAIL_CLIP_BYTES = 102 * 1024
#: Room kept for what personalisation adds (address, signed links) to the rendered HTML.
PERSONAL_HEADROOM = 3 * 1024
#: The footer's privacy notice, as the sponsor links are counted or not.
PRIVACY_PLAIN = (
    "Privacy: no tracking pixel and no click tracking; every link goes straight to its site."
)
PRIVACY_COUNTED = (
    "Privacy: no tracking pixel. Sponsored links pass through our site, which counts clicks per "
    "edition and records nothing about you; every other link goes straight to its site."
)


@dataclass(frozen=True, slots=True)
class EditionContext:
    """What the templates need besides the digest: names, links, legal footer."""

    newsletter_name: str
    links: personal.Links
    postal_address: str
    unsubscribe_address: str
    timezone: str
    prices_by: str = "CoinGecko"
    show_images: bool = False
    #: Whether sponsor links go through the counting redirect (the footer's privacy notice says so).
    sponsor_clicks_counted: bool = False


@dataclass(frozen=True, slots=True)
class RenderedEdition:
    subject: str
    preheader: str
    html: str
    text: str
    #: Stories left out so that the HTML stays under Gmail's clipping size.
    stories_dropped: int = 0


def _local_time(value: datetime, zone: str, pattern: str = "%H:%M") -> str:
    return value.astimezone(ZoneInfo(zone)).strftime(pattern)


class Renderer:
    """Renders editions from the templates found on ``search_path`` (first match wins)."""

    def __init__(self, search_path: Sequence[Path]) -> None:
        self.search_path = [path for path in search_path if path.is_dir()]
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.search_path),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2", "html"),
                disabled_extensions=("txt.j2", "txt"),
                default_for_string=True,
                default=True,
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["price"] = format_price
        self.env.filters["change"] = format_change
        self.env.filters["local_time"] = _local_time

    def render_page(self, name: str, **values: object) -> str:
        """Render one template; a missing, broken or inconsistent template is a RenderError."""
        try:
            return self.env.get_template(name).render(**values)
        except jinja2.TemplateNotFound as exc:
            where = ", ".join(str(path) for path in self.search_path) or "no template folder"
            raise RenderError(
                f"template {exc.name} was not found (searched: {where})",
                hint="check NEWSLETTER_TEMPLATES_DIR or reinstall the package",
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(
                f"template {exc.filename or name} has a syntax error on line {exc.lineno}: {exc.message}"
            ) from None
        except jinja2.UndefinedError as exc:
            raise RenderError(f"template {name} uses an undefined value: {exc.message}") from None

    def render_edition(
        self, digest: Digest, *, context: EditionContext, max_html_bytes: int = GMAIL_CLIP_BYTES
    ) -> RenderedEdition:
        """Render the edition; drop stories from the end while the HTML would be clipped by Gmail."""
        budget = max_html_bytes - PERSONAL_HEADROOM
        rendered = self._render(digest, context=context)
        size = len(rendered.html.encode("utf-8"))
        total = len(digest.stories)
        keep = total
        while size > budget and keep > 0:
            average = size / keep  # an over-estimate of one story's share: converges from above
            keep = max(keep - max(1, math.ceil((size - budget) / average)), 0)
            rendered = self._render(replace(digest, stories=digest.stories[:keep]), context=context)
            size = len(rendered.html.encode("utf-8"))
        if keep < total:
            log.warning(
                "edition %s: %d of %d stories left out to keep the HTML under %d KB",
                digest.edition_date,
                total - keep,
                total,
                max_html_bytes // 1024,
            )
        return replace(rendered, stories_dropped=total - keep)

    def _render(self, digest: Digest, *, context: EditionContext) -> RenderedEdition:
        subject = digest.subject(context.newsletter_name)
        preheader = digest.preheader(context.timezone)
        values = {
            "digest": digest,
            "market": digest.market,
            "stories": digest.stories,
            "sponsor": digest.sponsor,
            "subject": subject,
            "preheader": preheader,
            "summary": digest.summary(context.timezone),
            "edition": context,
            "archive_url": context.links.archive(digest.edition_date),
            "home_url": context.links.home(),
            "email": personal.EMAIL,
            "unsubscribe_url": personal.UNSUBSCRIBE_URL,
            "preferences_url": personal.PREFERENCES_URL,
            "privacy": PRIVACY_COUNTED if context.sponsor_clicks_counted else PRIVACY_PLAIN,
        }
        html = inline_css(self.render_page(HTML_TEMPLATE, **values))
        text = self.render_page(TEXT_TEMPLATE, **values)
        return RenderedEdition(subject=subject, preheader=preheader, html=html, text=text)


def inline_css(html: str) -> str:
    """Move the stylesheet into ``style`` attributes, keeping media queries in a ``<style>`` block.

    Premailer never fetches anything (no network), and keeps classes so that the dark-mode and
    mobile rules that mail clients apply from ``<style>`` still find their elements.
    """
    from premailer import Premailer  # imported when first needed: workers rarely render

    inliner = Premailer(
        html,
        allow_network=False,
        remove_classes=False,
        strip_important=False,
        keep_style_tags=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        align_floating_images=False,
    )
    result: str = inliner.transform(pretty_print=False)
    return result
