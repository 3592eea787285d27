"""Assembling each message: the prebuilt message of a variant (built once, then cached) and the
personal values substituted into it for one recipient."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from newsletter import personal
from newsletter.db import Database
from newsletter.delivery.claims import Claimed
from newsletter.delivery.headers import header_text
from newsletter.delivery.identity import SenderIdentity
from newsletter.delivery.message import (
    DATE,
    MESSAGE_ID,
    RECIPIENT,
    UNSUBSCRIBE_MAILTO,
    MessageHeaders,
    PreparedMessage,
    prepare_message,
)
from newsletter.editions import DEFAULT_VARIANT, SUBJECT_MAX, variant, variant_key
from newsletter.models import Issue, IssueVariant
from subscribers.model import MailFormat
from subscribers.tokens import PREFERENCES, UNSUBSCRIBE

#: Renders (once) and returns the stored variant for a watchlist and sections.
VariantSource = Callable[[Issue, Sequence[str] | None, Sequence[str] | None], IssueVariant]


class PreparedMessages:
    """The prebuilt messages of one sender, one per variant and format."""

    def __init__(
        self,
        *,
        database: Database,
        identity: SenderIdentity,
        variants: VariantSource | None = None,
    ) -> None:
        self.database = database
        self.identity = identity
        self.variants = variants
        self._prepared: dict[str, PreparedMessage] = {}

    def get(self, issue: Issue, item: Claimed) -> tuple[str, PreparedMessage]:
        """The prebuilt message of this subscriber's variant and format (built once, then cached)."""
        content = variant_key(item.watchlist, item.sections)
        key = f"{content}/{item.format.value}"
        prepared = self._prepared.get(key)
        if prepared is None:
            stored = self._variant(issue, item)
            headers = MessageHeaders(
                sender=self.identity.headers_from,
                subject=header_text(
                    stored.subject or issue.subject,
                    limit=SUBJECT_MAX,
                    fallback=self.identity.list_name,
                ),
                list_id=self.identity.list_id,
                list_name=self.identity.list_name,
                unsubscribe_mailto=self.identity.unsubscribe_mailto,
            )
            prepared = prepare_message(
                headers,
                html_body=stored.html if item.format is MailFormat.HTML else None,
                text_body=stored.text,
            )
            self._prepared[key] = prepared
        return key, prepared

    def _variant(self, issue: Issue, item: Claimed) -> IssueVariant:
        if self.variants is not None:
            return self.variants(issue, item.watchlist, item.sections)
        with self.database.transaction(readonly=True) as session:
            return variant(session, issue, DEFAULT_VARIANT)

    def values(self, item: Claimed, recipient: str, mid: str, date_header: str) -> dict[str, str]:
        """What replaces the message's tokens for this recipient."""
        signer, subscriber_id, key = self.identity.signer, item.subscriber_id, item.link_key
        unsubscribe_token = signer.sign(subscriber_id, UNSUBSCRIBE, key=key)
        links = self.identity.links
        return {
            RECIPIENT: recipient,
            DATE: date_header,
            MESSAGE_ID: mid,
            UNSUBSCRIBE_MAILTO: unsubscribe_token,
            personal.EMAIL: item.email,
            personal.UNSUBSCRIBE_URL: links.unsubscribe(unsubscribe_token),
            personal.PREFERENCES_URL: links.preferences(
                signer.sign(subscriber_id, PREFERENCES, key=key)
            ),
        }
