"""Third-party text made safe: feed HTML becomes plain text (via nh3) before it reaches an email."""

from __future__ import annotations

import html
import re
import unicodedata

import nh3

_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^\w\s]", re.UNICODE)
_TRAILER = re.compile(
    r"(\s*(\[(…|\.\.\.)\]|…|read more|continue reading|read the full story|the post .* appeared first on .*)"
    r"[\s.…:»›→>]*)+$",
    re.IGNORECASE,
)
_BLOCK_END = re.compile(r"(?i)</(p|div|li|h[1-6]|blockquote|tr)>|<br\s*/?>")


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: every tag dropped, scripts and styles with their content."""
    if not fragment:
        return ""
    spaced = _BLOCK_END.sub(" ", fragment)
    cleaned = nh3.clean(spaced, tags=set(), clean_content_tags={"script", "style"})
    text = html.unescape(cleaned)
    text = "".join(char for char in text if unicodedata.category(char)[0] != "C" or char in "\n\t ")
    return _SPACE.sub(" ", text).strip()


def strip_trailer(text: str) -> str:
    """Drop a feed's boilerplate tail: "Read more", "Continue reading", "[…]"."""
    return _TRAILER.sub("", text).strip()


def teaser(text: str, limit: int = 300) -> str:
    """``text`` cut to at most ``limit`` characters on a word boundary, with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


def clean_title(raw: str, limit: int = 300) -> str:
    """A headline as plain text on one line."""
    return teaser(html_to_text(raw), limit)


def title_key(title: str) -> str:
    """The title folded for duplicate detection: case, accents' forms, punctuation and spacing."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    folded = _NOT_WORD.sub(" ", folded)
    return _SPACE.sub(" ", folded).strip()[:500]


#: What an edition's content keeps in a feed: structure, links and images, no style or script.
_FEED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
}
#: The mail's wrapper, left out of a feed: the hidden preheader and the view-in-browser bar.
_WRAPPER = " | ".join(
    f"//*[contains(concat(' ', normalize-space(@class), ' '), ' {name} ')]"
    for name in ("preheader", "topbar")
)


def edition_content(document: str) -> str:
    """An edition's web version as a fragment safe for a feed reader (Atom ``<content>``).

    The mail's wrapper goes (head, hidden preheader, view-in-browser bar); what readers see stays,
    without styles, scripts, event handlers or any URL scheme but http(s) and mailto. Sponsor links
    keep ``rel="sponsored"``.
    """
    from lxml import html as lxml_html  # imported when first needed: only the feed uses it

    root = lxml_html.document_fromstring(document)
    for unwanted in root.xpath(f"//head | {_WRAPPER}"):
        unwanted.drop_tree()
    body = root.find("body")
    fragment = "".join(
        lxml_html.tostring(child, encoding="unicode")
        for child in (body if body is not None else root)
    )
    return nh3.clean(
        fragment,
        attributes=_FEED_ATTRIBUTES,
        tag_attribute_values={"a": {"rel": {"sponsored"}}},
        clean_content_tags={"script", "style", "title"},
        url_schemes={"http", "https", "mailto"},
        link_rel=None,
    )
