"""Abuse and security: CSRF, honeypot, rate limits across processes, mail caps, headers, secrets,
redirects, header injection, body size, client address behind proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.config import DEFAULT_SECRET_KEY
from newsletter.errors import ConfigError
from newsletter.web import create_app
from newsletter.web.security import client_ip, parse_networks
from subscribers.model import RateLimitBucket, SubscriberStatus
from subscribers.tokens import UNSUBSCRIBE, TokenSigner
from tests.web_fixtures import Clock, Web, list_unsubscribe_url, path_of, web, web_db, web_factory

__all__ = ["web", "web_db", "web_factory"]


# CSRF


def test_a_subscribe_post_without_a_valid_csrf_token_is_refused(web: Web) -> None:
    web.client.get("/")  # has a cookie now
    for token in ("", "0" * 64, TokenSigner("x").sign(1, "csrf")):
        answer = web.client.post("/subscribe", data={"email": "a@example.com", "csrf_token": token})
        assert answer.status_code == 403
        assert "This form had expired" in answer.text
        assert 'name="csrf_token" value="' in answer.text  # a fresh form to try again
    assert web.subscriber("a@example.com") is None
    assert web.messages() == []


def test_a_token_from_another_cookie_or_a_foreign_origin_is_refused(web: Web) -> None:
    token = web.csrf("/")
    web.client.cookies.clear()
    web.client.get("/")  # another visitor's cookie
    assert (
        web.client.post(
            "/subscribe", data={"email": "a@example.com", "csrf_token": token}
        ).status_code
        == 403
    )
    fresh = web.csrf("/")
    foreign = web.client.post(
        "/subscribe",
        data={"email": "a@example.com", "csrf_token": fresh},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert foreign.status_code == 403
    ours = web.client.post(
        "/subscribe",
        data={"email": "a@example.com", "csrf_token": fresh},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert ours.status_code == 303


def test_confirm_and_preferences_posts_need_the_csrf_token(web: Web) -> None:
    web.subscribe("reader@example.com")
    path = web.confirm_path("reader@example.com")
    answer = web.client.post(path, data={})
    assert answer.status_code == 403
    assert "Yes, subscribe me" in answer.text
    assert web.subscriber("reader@example.com").status is SubscriberStatus.PENDING  # type: ignore[union-attr]
    assert web.confirm("reader@example.com").status_code == 200
    welcome = web.last_mail_to("reader@example.com", "Welcome")
    preferences = next(
        path_of(url)
        for url in welcome.get_body(("plain",)).get_content().split()
        if "/preferences/" in url  # type: ignore[union-attr]
    )
    refused = web.client.post(
        preferences, data={"sections": ["market"], "watchlist": ["bitcoin"], "paused": "1"}
    )
    assert refused.status_code == 403
    assert web.subscriber("reader@example.com").paused is False  # type: ignore[union-attr]


def test_the_csrf_cookie_is_http_only_same_site_and_host_bound_on_https(
    web_factory: Callable[..., Web], sqlite_url: str
) -> None:
    plain = web_factory(sqlite_url)
    cookie = plain.client.get("/").headers["set-cookie"]
    assert cookie.startswith("nl_csrf=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    secure = web_factory(sqlite_url, base_url="https://news.example.com")
    cookie = secure.client.get("/").headers["set-cookie"]
    assert cookie.startswith("__Host-nl_csrf=") and "Secure" in cookie
    assert "max-age=31536000" in secure.client.get("/").headers["strict-transport-security"]


# the honeypot


def test_a_filled_honeypot_looks_like_success_and_does_nothing(web: Web) -> None:
    answer = web.subscribe("bot@example.com", website="http://spam.example")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/subscribe/check-inbox"
    assert web.subscriber("bot@example.com") is None
    assert web.messages() == []
    assert 'newsletter_signups_total{outcome="honeypot"} 1' in web.client.get("/metrics").text


# rate limits


def test_subscribes_per_ip_are_limited_across_processes(
    web_factory: Callable[..., Web], database_url: str
) -> None:
    clock = Clock()
    # Two app instances on one database: two worker processes, as far as the limits can tell.
    first = web_factory(database_url, clock=clock, subscribe_ip_limit=3)
    second = web_factory(database_url, clock=clock, subscribe_ip_limit=3)
    statuses = [
        web.subscribe(f"reader{n}@example.com").status_code
        for n, web in enumerate([first, second, first, second])
    ]
    assert statuses == [303, 303, 303, 429]
    refused = second.subscribe("reader9@example.com")
    assert refused.status_code == 429
    assert "Too many attempts" in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert second.subscriber("reader9@example.com") is None
    clock.advance(hours=1)  # the next window
    assert first.subscribe("reader9@example.com").status_code == 303


def test_subscribes_per_address_are_limited_whatever_the_ip(
    web_factory: Callable[..., Web], sqlite_url: str
) -> None:
    web = web_factory(sqlite_url, subscribe_address_limit=2)
    statuses = [web.subscribe("Target@example.com").status_code for _ in range(2)]
    statuses.append(web.subscribe("target@EXAMPLE.com").status_code)
    assert statuses == [303, 303, 429]
    assert web.subscribe("other@example.com").status_code == 303


def test_confirmation_mails_are_capped_per_address_per_day(
    web_factory: Callable[..., Web], sqlite_url: str
) -> None:
    web = web_factory(sqlite_url, confirmations_per_day=2)
    answers = [web.subscribe("victim@example.com") for _ in range(4)]
    assert {answer.status_code for answer in answers} == {303}  # the page never tells
    assert len(web.mails_to("victim@example.com")) == 2
    web.clock.advance(days=1)
    web.subscribe("victim@example.com")
    assert len(web.mails_to("victim@example.com")) == 3


def test_rate_limit_rows_hold_no_address_or_ip_and_old_windows_are_purged(web_db: Web) -> None:
    web = web_db
    web.subscribe("private@example.com")
    with web.app.database.transaction(readonly=True) as session:
        keys = [row.key for row in session.query(RateLimitBucket)]
    assert keys and not any("private" in key or "testclient" in key for key in keys)
    web.clock.advance(days=2)
    web.subscribe("later@example.com")
    with web.app.database.transaction(readonly=True) as session:
        assert all(row.expires_at > web.clock.now for row in session.query(RateLimitBucket))


# headers, secrets, redirects, injection


def test_security_headers_on_pages_api_errors_and_assets(web: Web) -> None:
    for path in ("/", "/archive", "/no-such-page", "/api/stats", "/static/site.css", "/healthz"):
        headers = web.client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert (
            "script-src" not in headers["content-security-policy"]
            or "'self'" in headers["content-security-policy"]
        )
    page = web.client.get("/")
    assert page.headers["cache-control"] == "no-store"  # it carries a CSRF token
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert "strict-transport-security" not in page.headers  # plain http here


def test_the_web_refuses_the_default_secret_unless_in_demo_mode(
    app_factory: Callable[..., object], sqlite_url: str
) -> None:
    app = app_factory(database_url=sqlite_url, demo=False, secret_key=DEFAULT_SECRET_KEY)
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY is the default"):
        create_app(app)  # type: ignore[arg-type]
    create_app(app_factory(database_url=sqlite_url, demo=True))  # type: ignore[arg-type]
    create_app(app_factory(database_url=sqlite_url, demo=False, secret_key="a" * 40))  # type: ignore[arg-type]


def test_tokens_signed_with_another_key_are_refused(web: Web) -> None:
    web.subscribed("reader@example.com")
    subscriber = web.subscriber("reader@example.com")
    assert subscriber is not None
    forged = TokenSigner("not-the-secret").sign(subscriber.id, UNSUBSCRIBE)
    assert (
        web.client.post(
            f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 400
    )
    assert web.subscriber("reader@example.com").status is SubscriberStatus.CONFIRMED  # type: ignore[union-attr]


def test_there_is_no_open_redirect(web: Web) -> None:
    answer = web.subscribe("a@example.com", next="https://evil.example/", redirect="//evil.example")
    assert answer.headers["location"] == "/subscribe/check-inbox"
    for path in ("//evil.example/", "/archive/", "/%2F%2Fevil.example"):
        result = web.client.get(path, follow_redirects=False, headers={"Host": "evil.example"})
        assert not 300 <= result.status_code < 400, path
        assert "location" not in result.headers


@pytest.mark.parametrize(
    "value",
    ["a@example.com\r\nBcc: victim@example.com", "a@example.com\nSubject: x", "a@example.com\r"],
)
def test_a_line_break_in_a_field_is_rejected(web: Web, value: str) -> None:
    answer = web.subscribe(value)
    assert answer.status_code == 400
    assert web.messages() == []
    tz = web.subscribe("b@example.com", timezone="UTC\r\nX-Evil: 1")
    assert tz.status_code == 400


def test_a_large_body_is_refused(web: Web) -> None:
    answer = web.client.post(
        "/subscribe",
        content=b"email=" + b"a" * 200_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413


# the client's address


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_ip("203.0.113.9", ["198.51.100.1"], proxies) == "203.0.113.9"  # not a proxy
    assert client_ip("127.0.0.1", ["198.51.100.1"], proxies) == "198.51.100.1"
    assert client_ip("127.0.0.1", ["6.6.6.6, 198.51.100.1, 10.1.2.3"], proxies) == "198.51.100.1"
    assert client_ip("127.0.0.1", ["garbage"], proxies) == "127.0.0.1"
    assert client_ip("127.0.0.1", [], ()) == "127.0.0.1"
    with pytest.raises(ConfigError, match="not an IP address"):
        parse_networks(["localhost"])


@given(st.lists(st.ip_addresses().map(str), max_size=5), st.ip_addresses().map(str))
def test_the_client_address_is_never_a_trusted_proxy_unless_all_hops_are(
    hops: list[str], peer: str
) -> None:
    proxies = parse_networks(["10.0.0.0/8"])
    found = client_ip(peer, [", ".join(hops)], proxies)
    untrusted = [h for h in [peer, *hops] if ipaddress.ip_address(h) not in proxies[0]]
    if untrusted:
        assert ipaddress.ip_address(found) not in proxies[0]
    assert found in [peer, *hops]


def test_subscribes_behind_a_proxy_count_per_real_client(
    web_factory: Callable[..., Web], sqlite_url: str
) -> None:
    web = web_factory(sqlite_url, subscribe_ip_limit=1, trusted_proxies=("127.0.0.1",))
    # TestClient's peer is "testclient", not a trusted proxy: X-Forwarded-For is ignored.
    first = web.client.post(
        "/subscribe",
        data={"email": "a@example.com", "csrf_token": web.csrf()},
        headers={"X-Forwarded-For": "198.51.100.1"},
        follow_redirects=False,
    )
    second = web.client.post(
        "/subscribe",
        data={"email": "b@example.com", "csrf_token": web.csrf()},
        headers={"X-Forwarded-For": "198.51.100.2"},
        follow_redirects=False,
    )
    assert (first.status_code, second.status_code) == (303, 429)
    assert web.subscriber("a@example.com").consent_ip == "testclient"  # type: ignore[union-attr]


def test_one_click_unsubscribe_needs_no_cookie_and_no_csrf(web: Web) -> None:
    web.subscribed("reader@example.com")
    url = list_unsubscribe_url(web.last_mail_to("reader@example.com", "Welcome"))
    web.client.cookies.clear()
    answer = web.client.post(path_of(url), data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert web.subscriber("reader@example.com").status is SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
