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

Every refusal is an InvalidValue on `idp_metadata_url` that says which rule refused it.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
from urllib.parse import SplitResult, urljoin, urlsplit

from identity.errors import InvalidValue

FIELD = "idp_metadata_url"
LIMIT_BYTES = 1024 * 1024
TIMEOUT_SECONDS = 10  # each connect and read; a sign-in may be waiting on the fetch (saml.views)
DEADLINE_SECONDS = 15  # the whole fetch, redirects included: a trickling server cannot hold it
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})


def private_addresses_allowed() -> bool:
    """Tell whether the operator lets metadata URLs reach non-public addresses."""
    return os.environ.get("SAML_METADATA_ALLOW_PRIVATE", "").strip().lower() in ("1", "true", "yes")


def fetch_metadata(url: str) -> bytes:
    """Download the IdP metadata at `url` under the rules above; raise InvalidValue on any refusal."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    for _ in range(MAX_REDIRECTS + 1):
        parts = _checked_url(url)
        status, location, body = _get(parts, _checked_address(parts), deadline)
        if status in REDIRECTS and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise InvalidValue(f"the IdP metadata URL answered HTTP {status}", field=FIELD)
        return body
    raise InvalidValue(f"the IdP metadata URL redirects more than {MAX_REDIRECTS} times", field=FIELD)


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
            raise InvalidValue(f"the IdP metadata URL's host {host!r} is at {address}, {refused}", field=FIELD)
    return str(addresses[0])


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool) -> str | None:
    """Say why a fetch may not connect to `address`, or None when it may (IPv4-mapped IPv6 is judged
    as its IPv4). Link-local addresses, where clouds serve instance metadata and credentials, are
    never allowed: no IdP lives there."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        return "a link-local, multicast or unspecified address, which is never allowed"
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
                raise InvalidValue(f"the IdP metadata is larger than {LIMIT_BYTES // 1024} KiB", field=FIELD)
            _check(deadline)
        _check(deadline)  # the watchdog's end of the connection can read as an early end of the answer
        return response.status, response.getheader("Location"), bytes(body)
    except (OSError, http.client.HTTPException) as error:  # ssl.SSLError and timeouts are OSErrors
        _check(deadline)
        raise InvalidValue(f"the IdP metadata URL could not be fetched: {type(error).__name__}: {error}",
                           field=FIELD) from None
    finally:
        watchdog.cancel()
        conn.close()


def _check(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise InvalidValue(f"the IdP metadata took longer than {DEADLINE_SECONDS} s to fetch", field=FIELD)
