"""Logs never contain a token: the access log and the app's own lines show personal links redacted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from subscribers.tokens import PREFERENCES, UNSUBSCRIBE, TokenSigner
from tests.conftest import EXAMPLES, ROOT, free_port

SECRET = "log-test-" + "s" * 40


def _start(env: dict[str, str], port: int, *, workers: int = 1) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "newsletter",
            "-v",
            "web",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until_serving(process: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/static/site.css", timeout=2)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                _, err = process.communicate(timeout=10)
                raise AssertionError(f"newsletter web did not start: {err}") from None
            time.sleep(0.1)


@pytest.fixture
def serving(tmp_path: Path) -> tuple[int, dict[str, str]]:
    """``newsletter web`` in its own process, on a database that has no tables: every lookup fails."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("NEWSLETTER_")}
    env |= {
        "NEWSLETTER_CONFIG": str(EXAMPLES / "demo.toml"),
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox"),
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
    }
    return port, env


@pytest.mark.parametrize("workers", [1, 2])
def test_finding_12_logs_never_contain_a_token(
    serving: tuple[int, dict[str, str]], workers: int
) -> None:
    """With ``--workers 2`` each worker is a fresh process that sets up the same logging."""
    port, env = serving
    url = f"http://127.0.0.1:{port}"
    process = _start(env, port, workers=workers)
    signer = TokenSigner(SECRET)
    tokens = {
        "unsubscribe": signer.sign(7, UNSUBSCRIBE),
        "preferences": signer.sign(7, PREFERENCES),
        "confirm": signer.sign_confirmation(7, nonce="n" * 32),
        "resubscribe": signer.sign(7, UNSUBSCRIBE),
    }
    try:
        _wait_until_serving(process, url)
        with httpx.Client(base_url=url, timeout=10) as http:
            for door, token in tokens.items():
                method = "POST" if door == "resubscribe" else "GET"
                answer = http.request(method, f"/{door}/{token}?utm_source=mail")
                assert answer.status_code >= 400, (door, answer.status_code)
            # the database has no tables: the one-click unsubscribe fails and the app logs it
            failed = http.post(
                f"/unsubscribe/{tokens['unsubscribe']}", data={"List-Unsubscribe": "One-Click"}
            )
            assert failed.status_code == 503
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
    for token in tokens.values():
        assert token not in err, err
        assert token.rsplit(".", 1)[1] not in err, err  # not even its signature
    # the lines are there, with the door named and the token replaced
    for door in tokens:
        assert f"/{door}/[redacted]" in err, err
    access = [line for line in err.splitlines() if "/unsubscribe/[redacted]" in line]
    assert any("POST" in line and "503" in line for line in access), err
    assert any(
        "newsletter.web.errors" in line and "/unsubscribe/[redacted]" in line
        for line in err.splitlines()
    ), err
