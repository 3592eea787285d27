"""DKIM signing cost per message, before and after, against the cost of personalising it, in one run.

Signs a message of the demo edition's size with RSA-2048 and Ed25519 keys, through the project's
signer (OpenSSL via ``cryptography``) and through dkimpy's own ``dkim.sign`` (pure-Python RSA: the
signer before), and prints the time per message of each, the ratio between them, and the time to
personalise one prebuilt message (byte substitution). Every signature is checked by dkimpy first.
Costs are CPU time of this process (the median of 5 rounds), so that other work on the machine
does not inflate them.
Run with ``uv run python benchmarks/signing.py``.
"""

from __future__ import annotations

import base64
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dkim  # noqa: E402
from common import sample_values  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from newsletter.delivery.dkim import SIGNED_HEADERS, DkimSigner, DkimSigners  # noqa: E402
from newsletter.delivery.message import MessageHeaders, prepare_message  # noqa: E402
from tests.test_golden import render  # noqa: E402

ROUNDS = 5
MESSAGES = 300


def per_message(function: object, messages: int = MESSAGES) -> float:
    timings = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(messages):
            function()  # type: ignore[operator]
        timings.append((time.process_time() - started) / messages)
    return statistics.median(timings)


def main() -> None:
    rendered = render()
    prepared = prepare_message(
        MessageHeaders(
            sender="Daily Crypto Insights <digest@example.com>",
            subject=rendered.subject,
            list_id="daily.example.com",
            list_name="Daily Crypto Insights",
            unsubscribe_mailto="unsubscribe@example.com",
        ),
        html_body=rendered.html,
        text_body=rendered.text,
    )
    values = sample_values(1)
    message = prepared.personalise(values)
    with tempfile.TemporaryDirectory() as scratch:
        pem_file = Path(scratch) / "rsa.pem"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(pem_file), "2048"], check=True, capture_output=True
        )
        pem = pem_file.read_bytes()
        public = subprocess.run(
            ["openssl", "rsa", "-in", str(pem_file), "-pubout", "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
    ed_key = SigningKey.generate()
    seed = base64.b64encode(bytes(ed_key))
    records = {
        b"rsa._domainkey.example.com.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(public),
        b"ed._domainkey.example.com.": b"v=DKIM1; k=ed25519; p="
        + base64.b64encode(bytes(ed_key.verify_key)),
    }
    rsa = DkimSigner(domain="example.com", selector="rsa", private_key=pem)
    ed = DkimSigner(
        domain="example.com", selector="ed", private_key=seed, algorithm="ed25519-sha256"
    )
    both = DkimSigners([rsa, ed])

    def dkimpy(key: bytes, selector: bytes, algorithm: bytes) -> bytes:
        header: bytes = dkim.sign(
            message,
            selector,
            b"example.com",
            key,
            canonicalize=(b"relaxed", b"simple"),
            signature_algorithm=algorithm,
            include_headers=list(SIGNED_HEADERS),
        )
        return header + message

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return records[name]

    signed_both = both.sign(message)
    for signed in (
        rsa.sign(message),
        ed.sign(message),
        dkimpy(pem, b"rsa", b"rsa-sha256"),
        dkimpy(seed, b"ed", b"ed25519-sha256"),
    ):
        assert dkim.verify(signed, dnsfunc=dns), "a signature does not verify"
    assert all(dkim.DKIM(signed_both).verify(idx=i, dnsfunc=dns) for i in (0, 1))

    personalise = per_message(lambda: prepared.personalise(values))
    rsa_before = per_message(lambda: dkimpy(pem, b"rsa", b"rsa-sha256"), MESSAGES // 10)
    ed_before = per_message(lambda: dkimpy(seed, b"ed", b"ed25519-sha256"))
    rsa_cost = per_message(lambda: rsa.sign(message))
    ed_cost = per_message(lambda: ed.sign(message))
    both_cost = per_message(lambda: both.sign(message))
    print(f"message size             : {len(message) / 1024:.1f} KiB")
    print(f"personalise              : {personalise * 1e6:8.1f} µs/message")
    for name, before, after in (
        ("rsa-sha256 2048", rsa_before, rsa_cost),
        ("ed25519-sha256 ", ed_before, ed_cost),
    ):
        print(
            f"DKIM {name} before : {before * 1e6:8.1f} µs/message (dkimpy, "
            f"{before / personalise:.0f}x personalise)"
        )
        print(
            f"DKIM {name} after  : {after * 1e6:8.1f} µs/message (OpenSSL, "
            f"{after / personalise:.0f}x personalise); before/after = {before / after:.1f}"
        )
    print(f"DKIM rsa + ed25519 after  : {both_cost * 1e6:8.1f} µs/message (two signatures)")
    print(
        f"one core signs about {1 / rsa_before:,.0f} msg/s before and {1 / rsa_cost:,.0f} msg/s "
        f"after with RSA-2048, {1 / ed_cost:,.0f} msg/s with Ed25519"
    )


if __name__ == "__main__":
    main()
