"""Finding 15: an edition, as a relay receives it, triggers no positive SpamAssassin content rule.

The messages are sent through a real SMTP server (aiosmtpd) and the bytes it received are scored by
Debian's ``spamassassin`` with local rules only (``-L``: no DNS, no network), in one run for
all of them. Outside CI a missing SpamAssassin skips; in CI (``CI=true``) it fails.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import mailbox
import os
import re
import shutil
import subprocess
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from newsletter.bootstrap import bootstrap
from newsletter.config import Settings, load_settings
from newsletter.render import Renderer
from newsletter.resources import templates_dir
from subscribers.model import MailFormat
from subscribers.service import add_subscriber
from tests.conftest import EXAMPLES, FIXED_NOW, ROOT, RecordingHandler, free_port, unavailable
from tests.test_email_layout import CONTEXT
from tests.test_golden import fixed_digest

EDITION = date(2026, 11, 24)

#: Rules about how a message travelled (envelope, relays, DNS), not about what the edition says.
#: The test scores a message as the first relay received it, so these say nothing about the content.
NOT_ABOUT_CONTENT = {
    "NO_RECEIVED": "no relay has added a Received header yet: the message is scored as it leaves",
    "NO_RELAYS": "same: there is no relay path to judge before the first hop",
    "ALL_TRUSTED": "every relay in the path is trusted: a property of the path, not the message",
    "RDNS_NONE": "the connecting relay has no reverse DNS: the sending host's setup",
    "RDNS_DYNAMIC": "the connecting relay looks like a dynamic address: the sending host's setup",
    "SPF_NONE": "the envelope sender's domain publishes no SPF record: DNS of the sender domain",
    "SPF_HELO_NONE": "the HELO name publishes no SPF record: DNS of the sending host",
}
#: SpamAssassin gives 0.001 to rules that only inform (HTML_MESSAGE: "HTML included in message")
#: or feed meta rules: they are listed in a report but never move a verdict. Anything above counts.
INFORMATIONAL = 0.001


def spamassassin_path() -> str:
    path = shutil.which("spamassassin")
    if path is None:
        unavailable("spamassassin is not installed: apt-get install spamassassin")
    return path


def score(messages: list[bytes], *, workdir: Path) -> dict[str, dict[str, float]]:
    """Each recipient's rules and scores, from one ``spamassassin -L`` run over an mbox of them."""
    command = spamassassin_path()
    box_path = workdir / "editions.mbox"
    box = mailbox.mbox(box_path)
    for data in messages:
        box.add(mailbox.mboxMessage(data))
    box.close()
    home = workdir / "home"
    home.mkdir()
    with box_path.open("rb") as source:
        result = subprocess.run(
            [
                command,
                "-L",  # local rules only: no DNS blocklists, no network
                "--mbox",
                "-p",
                str(home / "user_prefs"),
                "--cf=use_bayes 0",  # no learned state: the same verdict on every machine
                "--cf=bayes_auto_learn 0",
                "--cf=report_safe 0",
                "--cf=add_header all Tests _TESTSSCORES(,)_",
            ],
            stdin=source,
            capture_output=True,
            env={**os.environ, "HOME": str(home)},
            timeout=300,
            check=True,
        )
    scored_path = workdir / "scored.mbox"
    scored_path.write_bytes(result.stdout)
    verdicts = {}
    for scored in mailbox.mbox(scored_path):
        header = " ".join(str(scored["X-Spam-Tests"] or "").split())
        rules = {}
        for item in filter(None, header.split(",")):
            name, _, value = item.partition("=")
            rules[name.strip()] = float(value)
        verdicts[email.utils.parseaddr(str(scored["To"]))[1]] = rules
    assert len(verdicts) == len(messages), result.stderr.decode(errors="replace")[-2000:]
    return verdicts


@pytest.fixture(scope="module")
def scored_editions(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> dict[str, tuple[EmailMessage, dict[str, float]]]:
    """The default, a personalised and a text-only edition as received over SMTP, and their rules."""
    spamassassin_path()
    workdir = tmp_path_factory.mktemp("spamassassin")
    database = workdir / "newsletter.db"
    shutil.copyfile(sqlite_template, database)
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name in list(os.environ):
                if name.startswith("NEWSLETTER_"):
                    patch.delenv(name)
            patch.chdir(ROOT)
            _send_edition(
                load_settings(
                    EXAMPLES / "demo.toml",
                    database_url=f"sqlite:///{database}",
                    transport="smtp",
                    smtp_host="127.0.0.1",
                    smtp_port=port,
                    base_url="https://crypto.example.com",
                    sponsors=[
                        {
                            "date": EDITION,
                            "text": "Cold storage you can audit: hardware wallets from Example Vaults.",
                            "url": "https://vaults.example.org/newsletter",
                        }
                    ],
                )
            )
    finally:
        controller.stop()
    received = {item.recipients[0]: item.data for item in handler.messages}
    addresses = sorted(received)
    assert addresses == ["eth-fan@example.com", "everything@example.com", "plain@example.com"]
    verdicts = score([received[address] for address in addresses], workdir=workdir)
    return {address: (_parse(received[address]), verdicts[address]) for address in addresses}


def _send_edition(settings: Settings) -> None:
    """A default, a personalised (coins and sections) and a text-only subscriber, and a send."""
    app = bootstrap(settings)
    try:
        app.sources.fetch(now=FIXED_NOW)
        with app.database.transaction() as session:
            add_subscriber(session, "everything@example.com", confirmed=True)
            fan, _ = add_subscriber(session, "eth-fan@example.com", confirmed=True)
            fan.watchlist = ["ethereum", "solana"]
            fan.sections = ["market", "stories"]
            plain, _ = add_subscriber(session, "plain@example.com", confirmed=True)
            plain.format = MailFormat.TEXT
        outcome = app.sending.send(edition_date=EDITION, now=FIXED_NOW, clock=lambda: FIXED_NOW)
        assert outcome.report is not None and outcome.report.sent == 3
    finally:
        app.close()


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


#: Found by this test, not fixed here: SpamAssassin scores any large sum of money in a text/plain
#: message (MONEY_NOHTML, +1.0: LOTS_OF_MONEY and no HTML part), and a price edition quotes
#: "$63,957.00". The text-only edition needs a decision on how it states prices.
TEXT_ONLY_MONEY = pytest.mark.xfail(
    reason="MONEY_NOHTML (+1.0): a text/plain edition that quotes prices above $1,000",
    raises=AssertionError,
    strict=True,
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "address",
    [
        "everything@example.com",
        "eth-fan@example.com",
        pytest.param("plain@example.com", marks=TEXT_ONLY_MONEY),
    ],
)
def test_finding_15_no_positive_spamassassin_rule_about_the_content(
    scored_editions: dict[str, tuple[EmailMessage, dict[str, float]]], address: str
) -> None:
    message, rules = scored_editions[address]
    assert rules, "SpamAssassin reported no rule at all: the X-Spam-Tests header is missing"
    assert "MAILING_LIST_MULTI" in rules  # it did read our list headers
    positive = {
        name: points
        for name, points in rules.items()
        if points > INFORMATIONAL and name not in NOT_ABOUT_CONTENT
    }
    assert positive == {}, (
        f"{message['Subject']} ({message.get_content_type()}) scores positive content rules: "
        f"{positive}"
    )


def test_finding_15_the_preheader_is_hidden_without_a_look_alike_colour() -> None:
    html = Renderer([templates_dir()]).render_edition(fixed_digest(), context=CONTEXT).html
    found = re.search(r'<div class="preheader" style="([^"]*)"', html)
    assert found, "no inlined preheader"
    style = {
        name.strip(): value.strip()
        for name, _, value in (rule.partition(":") for rule in found.group(1).split(";"))
        if name.strip()
    }
    assert "color" not in style  # text in the background's colour is what spam filters score
    assert style["display"] == "none"
    assert style["mso-hide"] == "all"
    assert style["max-height"] == "0"
    assert style["overflow"] == "hidden"
    assert style["opacity"] == "0"


def test_finding_15_missing_spamassassin_skips_outside_ci_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no spamassassin on it
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        spamassassin_path()
    assert "spamassassin is not installed" in skipped.value.msg
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        spamassassin_path()
