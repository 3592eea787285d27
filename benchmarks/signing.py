"""DKIM signing cost per message, against the cost of personalising it, measured in the same run.

Signs a message of the demo edition's size with RSA-2048 and Ed25519 keys and prints the time per
message of each, beside the time to personalise one prebuilt message (byte substitution). Run with
``uv run python benchmarks/signing.py``.
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

from common import sample_values  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from newsletter.delivery.dkim import DkimSigner  # noqa: E402
from newsletter.delivery.message import MessageHeaders, prepare_message  # noqa: E402
from tests.test_golden import render  # noqa: E402

ROUNDS = 5
MESSAGES = 300


def per_message(function: object) -> float:
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(MESSAGES):
            function()  # type: ignore[operator]
        timings.append((time.perf_counter() - started) / MESSAGES)
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
        pem = Path(scratch) / "rsa.pem"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(pem), "2048"], check=True, capture_output=True
        )
        rsa = DkimSigner(domain="example.com", selector="news", private_key=pem.read_bytes())
    seed = base64.b64encode(bytes(SigningKey.generate()))
    ed = DkimSigner(
        domain="example.com", selector="news", private_key=seed, algorithm="ed25519-sha256"
    )
    personalise = per_message(lambda: prepared.personalise(values))
    rsa_cost = per_message(lambda: rsa.sign(message))
    ed_cost = per_message(lambda: ed.sign(message))
    print(f"message size         : {len(message) / 1024:.1f} KiB")
    print(f"personalise          : {personalise * 1e6:8.1f} µs/message")
    print(
        f"DKIM rsa-sha256 2048 : {rsa_cost * 1e6:8.1f} µs/message ({rsa_cost / personalise:.0f}x personalise)"
    )
    print(
        f"DKIM ed25519-sha256  : {ed_cost * 1e6:8.1f} µs/message ({ed_cost / personalise:.0f}x personalise)"
    )
    print(
        f"one core signs about {1 / rsa_cost:,.0f} msg/s with RSA, {1 / ed_cost:,.0f} msg/s with Ed25519"
    )


if __name__ == "__main__":
    main()
