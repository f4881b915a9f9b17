"""URLs, host patterns and address classes (meshguard_gateway/url.py), and the edge resolver."""

from __future__ import annotations

import asyncio

import pytest

from meshguard_gateway.resolver import resolve_url_host
from meshguard_gateway.url import UnreadableUrl, host_matches, literal_address, non_public_reason, split_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Example.COM/a?b#c", ("https", "example.com")),
        ("http://example.com.:8080/", ("http", "example.com")),
        ("https://user:pw@example.com/", ("https", "example.com")),
        ("https://example.com@evil.test/", ("https", "evil.test")),
        ("http://[::1]:80/", ("http", "::1")),
        ("HTTP://10.0.0.1", ("http", "10.0.0.1")),
        ("ftp://files.example.org/x", ("ftp", "files.example.org")),
    ],
)
def test_url_scheme_and_host(url: str, expected: tuple[str, str]) -> None:
    assert split_url(url) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("example.com/path", "absolute URL"),
        ("https://evil.test\\@example.com/", "backslash"),
        ("https://exa mple.com/", "whitespace"),
        ("https:///path", "absolute URL"),
        ("https://bücher.example/", "not ASCII"),
        ("https://exa_mple..com/", "not a valid host"),
        ("http://example.com:99999/", "cannot be parsed"),
        ("http://[::1/", "cannot be parsed"),
    ],
)
def test_url_unreadable(url: str, why: str) -> None:
    with pytest.raises(UnreadableUrl) as caught:
        split_url(url)
    assert why in caught.value.reason


@pytest.mark.parametrize(
    ("host", "address"),
    [("127.0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"), ("0x7f.0.0.1", "127.0.0.1"), ("2130706433", "127.0.0.1"),
     ("::ffff:10.0.0.1", "::ffff:a00:1"), ("example.com", None), ("bad.cafe", None)],
)
def test_url_literal_addresses_include_the_forms_resolvers_accept(host: str, address: str | None) -> None:
    got = literal_address(host)
    assert (str(got) if got is not None else None) == address


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"), ("169.254.169.254", "link-local"), ("100.64.0.1", "CGNAT"),
        ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("240.0.0.1", "reserved"),
        ("::1", "loopback"), ("fe80::1", "link-local"), ("fd00::1", "unique local"), ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "embeds 127.0.0.1, loopback"), ("64:ff9b::a00:1", "embeds 10.0.0.1, private"),
        ("2002:c0a8:101::1", "embeds 192.168.1.1, private"), ("fec0::1", "site-local"), ("::", "unspecified"),
    ],
)
def test_url_non_public_addresses(address: str, why: str) -> None:
    reason = non_public_reason(address)
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_url_public_addresses(address: str) -> None:
    assert non_public_reason(address) is None


@pytest.mark.parametrize(
    ("host", "pattern", "matches"),
    [
        ("example.com", "example.com", True), ("www.example.com", "example.com", False),
        ("www.example.com", "*.example.com", True), ("a.b.example.com", "*.example.com", True),
        ("example.com", "*.example.com", False), ("badexample.com", "*.example.com", False),
        ("::1", "0:0::1", True), ("10.0.0.1", "10.0.0.1", True),
    ],
)
def test_url_host_patterns(host: str, pattern: str, matches: bool) -> None:
    assert host_matches(host, pattern) is matches


def test_url_resolver_resolves_names_and_leaves_the_rest() -> None:
    got = asyncio.run(resolve_url_host("http://localhost:8080/admin", timeout=5))
    assert got is not None and got.host == "localhost" and got.error is None
    assert "127.0.0.1" in got.addresses or "::1" in got.addresses
    assert asyncio.run(resolve_url_host("http://127.0.0.1/")) is None  # a literal needs no lookup
    assert asyncio.run(resolve_url_host("git status")) is None
    assert asyncio.run(resolve_url_host(None)) is None


def test_url_resolver_reports_a_name_that_does_not_resolve() -> None:
    got = asyncio.run(resolve_url_host("https://no-such-host.invalid/", timeout=3))
    assert got is not None and got.addresses == () and got.error


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        ("http://169.254.169.254/", "169.254.169.254"), ("http://2852039166/latest/", "169.254.169.254"),
        ("http://0xa9fea9fe/", "169.254.169.254"), ("http://169.254.43518/", "169.254.169.254"),
        ("http://0251.0376.0251.0376/", "169.254.169.254"), ("http://[::ffff:169.254.169.254]/", "169.254.169.254"),
        ("http://[::ffff:a9fe:a9fe]/", "169.254.169.254"), ("http://169.254.169.254/", "::ffff:169.254.169.254"),
        ("http://10.1/", "10.0.0.1"), ("http://[::ffff:a00:1]/", "10.0.0.1"), ("http://[0::1]/", "::1"),
    ],
)
def test_url_ip_pattern_matches_every_spelling_of_the_address(url: str, pattern: str) -> None:
    """A `hosts` deny naming an address is not bypassed by another spelling a resolver reads the same way."""
    _, host = split_url(url)
    assert host_matches(host, pattern) is True


@pytest.mark.parametrize(("url", "pattern"), [("http://169.254.169.253/", "169.254.169.254"),
                                              ("http://10.0.0.1.example.com/", "10.0.0.1"),
                                              ("http://[::ffff:10.0.0.2]/", "10.0.0.1")])  # fmt: skip
def test_url_ip_pattern_does_not_match_other_hosts(url: str, pattern: str) -> None:
    _, host = split_url(url)
    assert host_matches(host, pattern) is False
