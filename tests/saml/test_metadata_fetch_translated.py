"""The metadata fetch judges the IPv4 address inside translated and tunnelled IPv6 addresses, and
tells a scanner nothing about which ports answer (issue 14)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

import saml.metadata_fetch
from identity.errors import InvalidValue
from saml.metadata_fetch import FAILED, fetch_metadata, refusal
from tests.saml.idp import TestIdP
from tests.saml.metadata_server import MetadataServer

# (address, the IPv4 inside it)
NEVER = [
    ("64:ff9b::a9fe:a9fe", "169.254.169.254 through the well-known NAT64 prefix"),
    ("64:ff9b:1::a9fe:a9fe", "169.254.169.254 through a local-use NAT64 /96"),
    ("64:ff9b:1:a9fe:a9:fe00::", "169.254.169.254 through a local-use NAT64 /48"),
    ("2002:a9fe:a9fe::1", "169.254.169.254 through 6to4"),
    ("2001:0:4136:e378:8000:63bf:5601:5601", "169.254.169.254 as a Teredo client (obfuscated)"),
]
PRIVATE = [
    ("64:ff9b::7f00:1", "127.0.0.1 through NAT64"),
    ("64:ff9b::a00:8", "10.0.0.8 through NAT64"),
    ("2002:c0a8:101::1", "192.168.1.1 through 6to4"),
    ("2002:7f00:1::", "127.0.0.1 through 6to4"),
    ("::7f00:1", "127.0.0.1, IPv4-compatible"),
]


@pytest.mark.parametrize(("address", "inside"), NEVER, ids=[i for _, i in NEVER])
def test_link_local_ipv4_inside_ipv6_is_never_allowed(address: str, inside: str) -> None:
    for allow_private in (False, True):
        assert "never allowed" in (refusal(ipaddress.ip_address(address), allow_private=allow_private) or "")


@pytest.mark.parametrize(("address", "inside"), PRIVATE, ids=[i for _, i in PRIVATE])
def test_private_ipv4_inside_ipv6_is_not_public(address: str, inside: str) -> None:
    assert "not a public address" in (refusal(ipaddress.ip_address(address), allow_private=False) or "")


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "2606:4700:4700::1111"])
def test_a_public_ipv4_inside_and_plain_public_ipv6_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=False) is None


def _resolving_to(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]

    monkeypatch.setattr(saml.metadata_fetch.socket, "getaddrinfo", getaddrinfo)


def test_a_host_resolving_to_nat64_of_a_private_address_is_refused_before_connecting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The attacker's move: a DNS name of theirs whose AAAA is 64:ff9b::7f00:1 (127.0.0.1 via NAT64)."""
    _resolving_to(monkeypatch, "64:ff9b::7f00:1")
    connected = []
    monkeypatch.setattr(saml.metadata_fetch.socket, "create_connection", lambda *a, **k: connected.append(a))
    with pytest.raises(InvalidValue, match="not a public address") as refused:
        fetch_metadata("https://nat64.attacker.example/metadata")
    assert "7f00" not in refused.value.message and "127.0.0.1" not in refused.value.message
    assert connected == []


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_refused_timed_out_tls_failed_and_non_metadata_answers_all_read_the_same(
        metadata_server: MetadataServer, monkeypatch: pytest.MonkeyPatch, closed_port: int, idp: TestIdP,
        caplog: pytest.LogCaptureFixture) -> None:
    """The attacker's move: point the metadata URL at internal host:port pairs and read the errors."""
    metadata_server.routes["/page"] = (200, {}, b"<!doctype html><html><body>intranet</body></html>")
    metadata_server.routes["/xml"] = (200, {}, b"<status>ok</status>")
    metadata_server.routes["/error"] = (500, {}, b"oops")
    monkeypatch.setattr(saml.metadata_fetch, "DEADLINE_SECONDS", 1)
    metadata_server.stall_headers.add("/stall")
    messages, details = set(), []
    for url in (f"https://127.0.0.1:{closed_port}/metadata", metadata_server.url_for("/page"),
                metadata_server.url_for("/xml"), metadata_server.url_for("/error"),
                metadata_server.url_for("/stall")):
        caplog.clear()
        with pytest.raises(InvalidValue) as refused:
            fetch_metadata(url)
        messages.add(refused.value.message)
        details.append(caplog.text)
    monkeypatch.delenv("SSL_CERT_FILE")  # a TLS failure
    with pytest.raises(InvalidValue) as refused:
        fetch_metadata(metadata_server.url)
    messages.add(refused.value.message)
    assert messages == {FAILED}
    assert "ConnectionRefusedError" in details[0] and "not XML" not in details[0]  # the log keeps the detail
    assert "not SAML metadata" in details[2] and "answered HTTP 500" in details[3] and "took longer" in details[4]


def test_real_metadata_is_still_fetched(metadata_server: MetadataServer, idp: TestIdP) -> None:
    metadata_server.body = idp.metadata()
    assert fetch_metadata(metadata_server.url) == idp.metadata()
