"""Issue 10, finding 11: the signup limits count one IPv6 client per /64 and one mailbox per address.

Over HTTP against the real app: each client is a TestClient whose peer address is set, as a server
would see it. The mailbox table is spelled out in subscribers/addresses.py and docs/web.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from subscribers.addresses import mailbox_key, normalise
from subscribers.ratelimit import client_key
from tests.web_fixtures import _CSRF, BASE_URL, Web, web_factory

__all__ = ["web_factory"]


@pytest.fixture
def clients(web_factory: Callable[..., Web]) -> Iterator[Callable[[Web, str], TestClient]]:
    opened: list[TestClient] = []

    def from_address(web: Web, ip: str) -> TestClient:
        client = TestClient(web.fastapi, base_url=BASE_URL, client=(ip, 50000))
        opened.append(client)
        return client

    yield from_address
    for client in opened:
        client.close()


def subscribe(client: TestClient, address: str) -> httpx.Response:
    page = client.get("/")
    match = _CSRF.search(page.text)
    assert match, page.text
    return client.post(
        "/subscribe",
        data={"email": address, "csrf_token": match.group(1)},
        follow_redirects=False,
    )


def test_finding_11_ipv6_clients_are_limited_per_64(
    web_factory: Callable[..., Web], sqlite_url: str, clients: Callable[[Web, str], TestClient]
) -> None:
    web = web_factory(sqlite_url, subscribe_ip_limit=2)
    same_64 = ["2001:db8:1:2::a", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::3"]
    answers = [
        subscribe(clients(web, ip), f"reader{n}@example.com").status_code
        for n, ip in enumerate(same_64)
    ]
    assert answers == [303, 303, 429]
    assert "reader2@example.com" not in {m["To"] for m in web.messages()}
    # another /64 of the same /48 is another client
    assert subscribe(clients(web, "2001:db8:1:3::a"), "other@example.com").status_code == 303


def test_finding_11_ipv4_clients_are_still_limited_per_address(
    web_factory: Callable[..., Web], sqlite_url: str, clients: Callable[[Web, str], TestClient]
) -> None:
    web = web_factory(sqlite_url, subscribe_ip_limit=1)
    answers = [
        subscribe(clients(web, f"198.51.100.{n}"), f"reader{n}@example.com").status_code
        for n in (1, 2, 3)
    ]
    assert answers == [303, 303, 303]
    # an IPv4-mapped IPv6 peer is the same client as its IPv4 address
    assert subscribe(clients(web, "::ffff:198.51.100.1"), "again@example.com").status_code == 429


def confirmations_to(web: Web) -> list[str]:
    return sorted(m["To"] for m in web.messages())


def test_finding_11_mail_cap_counts_plus_and_dot_variants_of_one_mailbox_as_one(
    web_factory: Callable[..., Web], sqlite_url: str, clients: Callable[[Web, str], TestClient]
) -> None:
    web = web_factory(
        sqlite_url, confirmations_per_day=2, subscribe_address_limit=50, subscribe_ip_limit=50
    )
    gmail = ["jane.doe+a@gmail.com", "janedoe+b@googlemail.com", "J.a.n.e.Doe@gmail.com"]
    outlook = ["ann+1@outlook.com", "ann+2@outlook.com", "ann+3@outlook.com"]
    elsewhere = ["bo+1@example.org", "bo+2@example.org", "bo+3@example.org"]
    for n, address in enumerate(gmail + outlook + elsewhere):
        assert subscribe(clients(web, f"203.0.113.{n + 1}"), address).status_code == 303
    received = confirmations_to(web)
    assert len([to for to in received if to.endswith(("@gmail.com", "@googlemail.com"))]) == 2
    assert len([to for to in received if "outlook" in to]) == 2
    # a domain not in the table may route plus tags to different people: counted apart
    assert [to for to in received if "example.org" in to] == elsewhere


def test_finding_11_signup_limit_per_address_counts_the_mailbox(
    web_factory: Callable[..., Web], sqlite_url: str, clients: Callable[[Web, str], TestClient]
) -> None:
    web = web_factory(sqlite_url, subscribe_address_limit=2, subscribe_ip_limit=50)
    answers = [
        subscribe(clients(web, f"203.0.113.{n + 1}"), address).status_code
        for n, address in enumerate(["sam+x@gmail.com", "s.am@gmail.com", "SAM+y@googlemail.com"])
    ]
    assert answers == [303, 303, 429]


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("Jane.Doe+news@gmail.com", "janedoe@gmail.com"),
        ("j.a.n.e.doe@googlemail.com", "janedoe@gmail.com"),
        ("janedoe+a+b@gmail.com", "janedoe@gmail.com"),
        ("ann+x@outlook.com", "ann@outlook.com"),
        ("a.nn@outlook.com", "a.nn@outlook.com"),  # Outlook keeps dots
        ("ann+x@icloud.com", "ann@icloud.com"),
        ("ann+x@proton.me", "ann@proton.me"),
        ("a.nn+x@example.org", "a.nn+x@example.org"),  # not in the table: as given
        ("ann+x@gmail.com.example.org", "ann+x@gmail.com.example.org"),
    ],
)
def test_finding_11_the_mailbox_table(address: str, mailbox: str) -> None:
    assert mailbox_key(normalise(address).key) == mailbox


@pytest.mark.parametrize(
    ("ip", "client"),
    [
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("192.0.2.7", "192.0.2.7"),
        ("testclient", "testclient"),
    ],
)
def test_finding_11_client_identity(ip: str, client: str) -> None:
    assert client_key(ip) == client
