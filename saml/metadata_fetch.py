"""An IdP's metadata fetched from its URL, without letting that URL reach inside our network.

The URL may come from an org's admin (`PUT /api/v1/orgs/{org}/sso`), and the service fetches it
again on `identity saml refresh` and after a refused signature: requests the service makes on a
tenant's say, which is server-side request forgery's shape (OWASP's SSRF prevention cheat sheet).
So a fetch:

- uses https only, with the certificate checked against the URL's host;
- resolves the host once and refuses it when any of its addresses is not public (loopback,
  private, shared, reserved, and the IPv4-mapped forms of these), unless the operator allows
  private addresses with `SAML_METADATA_ALLOW_PRIVATE=1` (an IdP inside the network, such as
  AD FS); link-local (169.254.169.254, the clouds' instance metadata), multicast and unspecified
  addresses are refused even then;
- connects to the address it checked, not to a second DNS answer;
- follows at most 3 redirects, each checked the same way;
- reads at most 1 MiB, within 15 seconds in all (a timer ends the connection at the deadline,
  whatever it is waiting for; connecting and the TLS handshake have 10 seconds of their own).

Every refusal is an InvalidValue on `idp_metadata_url`. One made before connecting says which rule
refused the URL; every failure from connecting on reads the same (FAILED), with the detail in the
log, so that the service cannot be used as a scanner of which internal hosts and ports answer.
An IPv6 address that carries an IPv4 address (IPv4-mapped or -compatible, NAT64, 6to4, Teredo)
is judged as that IPv4 address as well.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from urllib.parse import SplitResult, urljoin, urlsplit

from lxml import etree

from identity import config
from identity.errors import InvalidValue

FIELD = "idp_metadata_url"
LIMIT_BYTES = 1024 * 1024
TIMEOUT_SECONDS = 10  # each connect and read; a sign-in may be waiting on the fetch (saml.views)
DEADLINE_SECONDS = 15  # the whole fetch, redirects included: a trickling server cannot hold it
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
FAILED = "could not fetch the metadata from that URL"
log = logging.getLogger("identity.saml")


def private_addresses_allowed() -> bool:
    """Tell whether the operator lets metadata URLs reach non-public addresses."""
    return config.saml_metadata_allow_private()


def fetch_metadata(url: str) -> bytes:
    """Download the IdP metadata at `url` under the rules above; raise InvalidValue on any refusal.

    What refuses the URL before any connection (its form, its host's addresses) is said; anything
    learnt from connecting (refused, timed out, TLS, an HTTP status, a redirect, an answer that is
    not SAML metadata) reads as one message, FAILED, so that the URL cannot be used to find out
    which hosts and ports answer inside a network. The detail is logged here.
    """
    deadline = time.monotonic() + DEADLINE_SECONDS
    first = _checked_url(url)
    address = _checked_address(first)
    try:
        return _follow(first, address, url, deadline)
    except _Unfetched as failure:
        log.warning("IdP metadata fetch failed: %s", failure.detail, extra={"host": first.hostname})
        raise InvalidValue(FAILED, field=FIELD) from None


class _Unfetched(Exception):
    """A fetch that failed after connecting began; `detail` is for the log only."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _follow(parts: SplitResult, address: str, url: str, deadline: float) -> bytes:
    for hop in range(MAX_REDIRECTS + 1):
        if hop:
            try:
                parts = _checked_url(url)
                address = _checked_address(parts)
            except InvalidValue as refused:
                raise _Unfetched(f"redirected to {url!r}: {refused.message}") from None
        status, location, body = _get(parts, address, deadline)
        if status in REDIRECTS and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise _Unfetched(f"answered HTTP {status}")
        _check_metadata(body)
        return body
    raise _Unfetched(f"redirects more than {MAX_REDIRECTS} times")


_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
METADATA_ROOTS = frozenset({"{urn:oasis:names:tc:SAML:2.0:metadata}EntityDescriptor",
                            "{urn:oasis:names:tc:SAML:2.0:metadata}EntitiesDescriptor"})


def _check_metadata(body: bytes) -> None:
    """Refuse an answer that is not a SAML metadata document (what is in it is parse_idp_metadata's)."""
    try:
        root = etree.fromstring(body, _XML)
    except (etree.XMLSyntaxError, ValueError):
        raise _Unfetched("the answer is not XML") from None
    if root.tag not in METADATA_ROOTS:
        raise _Unfetched(f"the answer is XML but not SAML metadata: {str(root.tag)[:100]}")


def _checked_url(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port out of range)
    except ValueError:
        raise InvalidValue("the IdP metadata URL is not a valid URL", field=FIELD) from None
    if parts.scheme.lower() != "https":
        raise InvalidValue("an IdP metadata URL must use https", field=FIELD)
    if not parts.hostname:
        raise InvalidValue("the IdP metadata URL has no host", field=FIELD)
    if parts.username is not None or parts.password is not None:
        raise InvalidValue("the IdP metadata URL must not carry credentials", field=FIELD)
    return parts


def _checked_address(parts: SplitResult) -> str:
    """Resolve the URL's host; return the address to connect to, once every address passed."""
    host = str(parts.hostname)
    try:
        found = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise InvalidValue(f"the IdP metadata URL's host {host!r} does not resolve", field=FIELD) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not addresses:
        raise InvalidValue(f"the IdP metadata URL's host {host!r} does not resolve", field=FIELD)
    allow_private = private_addresses_allowed()
    for address in addresses:
        refused = refusal(address, allow_private=allow_private)
        if refused:
            log.info("IdP metadata URL refused: %r is at %s", host, address)
            raise InvalidValue(f"the IdP metadata URL's host {host!r} is at {refused}", field=FIELD)
    return str(addresses[0])


NEVER_ALLOWED = "a link-local, multicast or unspecified address, which is never allowed"
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052, the well-known prefix
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215, local-use translation prefixes
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291 section 2.5.5.1)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Return every IPv4 address a packet to `address` may reach through a translator or tunnel:
    IPv4-mapped, IPv4-compatible, NAT64 (RFC 6052: in a local-use /48, each of the positions the
    prefix lengths 48 to 96 put it at), 6to4 (RFC 3056), and both ends of Teredo (RFC 4380)."""
    found: list[ipaddress.IPv4Address] = []
    raw = address.packed
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in NAT64 or (address in IPV4_COMPATIBLE and int(address) > 1):
        found.append(ipaddress.IPv4Address(raw[12:]))
    if address in NAT64_LOCAL:  # the prefix length is the network's own choice: judge every position
        # RFC 6052 section 2.2: bits 64 to 71 (the "u" octet) are skipped; 0.0.0.0 is no translation
        candidates = [ipaddress.IPv4Address((raw[length // 8:8] + raw[9:])[:4]) for length in (48, 56, 64)]
        found.extend(c for c in [*candidates, ipaddress.IPv4Address(raw[12:])] if int(c))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool) -> str | None:
    """Say why a fetch may not connect to `address`, or None when it may. An IPv6 address that
    carries an IPv4 address (embedded_ipv4) is judged as that IPv4 address too. Link-local
    addresses, where clouds serve instance metadata and credentials, are never allowed: no IdP
    lives there."""
    if isinstance(address, ipaddress.IPv6Address):
        refusals = [r for inner in embedded_ipv4(address) if (r := _judge(inner, allow_private=allow_private))]
        if refusals:  # the strictest reason, so that the operator's switch is not offered in vain
            return f"{NEVER_ALLOWED if NEVER_ALLOWED in refusals else refusals[0]}, inside an IPv6 address"
        if address.ipv4_mapped is not None:
            return None
    return _judge(address, allow_private=allow_private)


def _judge(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool) -> str | None:
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        return NEVER_ALLOWED
    if not allow_private and not address.is_global:
        return "not a public address (an operator can allow private ones: SAML_METADATA_ALLOW_PRIVATE=1)"
    return None


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address, with the URL's host for SNI, the certificate and `Host`."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]

    def expire(self) -> None:
        """End whatever the connection is waiting for (from another thread, at the deadline)."""
        if self.sock is not None:
            try:
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)  # the TCP socket under TLS
            except OSError:
                pass


def _get(parts: SplitResult, address: str, deadline: float) -> tuple[int, str | None, bytes]:
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = _PinnedHTTPSConnection(str(parts.hostname), parts.port or 443, address, TIMEOUT_SECONDS)
    # Each receive has its own timeout; this bounds them all once connected (the connection and its
    # TLS handshake have TIMEOUT_SECONDS of their own).
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), conn.expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("GET", path, headers={"Accept": "application/samlmetadata+xml, application/xml, text/xml"})
        response = conn.getresponse()
        body = bytearray()
        while response.status not in REDIRECTS and (chunk := response.read1(64 * 1024)):
            body += chunk  # what has arrived: a trickle cannot outlast the deadline
            if len(body) > LIMIT_BYTES:
                raise _Unfetched(f"the answer is larger than {LIMIT_BYTES // 1024} KiB")
            _check(deadline)
        _check(deadline)  # the watchdog's end of the connection can read as an early end of the answer
        return response.status, response.getheader("Location"), bytes(body)
    except (OSError, http.client.HTTPException) as error:  # ssl.SSLError and timeouts are OSErrors
        _check(deadline)
        raise _Unfetched(f"{type(error).__name__}: {error}") from None
    finally:
        watchdog.cancel()
        conn.close()


def _check(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise _Unfetched(f"took longer than {DEADLINE_SECONDS} s")
