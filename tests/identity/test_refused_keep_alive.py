"""A refused request keeps its keep-alive connection usable, on the server `identity serve` runs (gunicorn).

An IdP's SCIM client sends a body whole before it reads the answer, then sends its next request on
the same connection. A refusal answered before the body was read (413 for a body over the limit,
401 before authentication) must leave the connection where the next request starts: the server
reads and discards the rest of the body (bounded), or, past that bound, says `Connection: close`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from identity.web.unread_body import MAX_DRAINED_BYTES
from tests.identity.test_serve import BIN, _free_port, _stop, _wait_healthy


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """`identity serve` with 2 workers on SQLite, and a SCIM token of an org it serves."""
    port, data = _free_port(), tmp_path_factory.mktemp("keep-alive")
    env = {**os.environ, "IDENTITY_DATA_DIR": str(data / "var"), "BASE_URL": f"http://127.0.0.1:{port}"}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc)
        created = subprocess.run([str(BIN / "identity"), "org", "create", "Kept", "--json"], env=env,
                                 capture_output=True, text=True, check=True)
        yield port, json.loads(created.stdout)["scim_token"]
    finally:
        _stop(proc)


def _user(size: int) -> bytes:
    return json.dumps({"userName": "x" * size}).encode()


def _ask(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
         token: str | None = None) -> http.client.HTTPResponse:
    headers = {"Content-Type": "application/scim+json", **({"Authorization": f"Bearer {token}"} if token else {})}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response


@pytest.mark.parametrize(("with_token", "size", "status"), [
    (True, 2 * 1024 * 1024, 413),   # over the 1 MiB limit: refused before it is read
    (False, 300 * 1024, 401),       # refused before authentication, so before the body is read
    (True, 300 * 1024, 400),        # read, and refused as an invalid userName
])
def test_the_next_request_on_the_connection_is_answered(served: tuple[int, str], with_token: bool, size: int,
                                                        status: int) -> None:
    port, token = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        refused = _ask(conn, "POST", "/scim/v2/Users", _user(size), token if with_token else None)
        assert refused.status == status and not refused.will_close
        first = conn.sock
        answered = _ask(conn, "GET", "/scim/v2/ServiceProviderConfig", token=token)
        assert answered.status == 200
        assert conn.sock is first  # the same connection: the client did not have to open another
    finally:
        conn.close()


def test_a_chunked_body_over_the_limit_keeps_the_connection(served: tuple[int, str]) -> None:
    port, token = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = _user(2 * 1024 * 1024)
        conn.request("POST", "/scim/v2/Users", body=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
                     encode_chunked=True)
        refused = conn.getresponse()
        refused.read()
        assert refused.status == 413 and not refused.will_close
        first = conn.sock
        assert _ask(conn, "GET", "/scim/v2/ServiceProviderConfig", token=token).status == 200
        assert conn.sock is first
    finally:
        conn.close()


def test_a_body_past_the_drain_bound_is_refused_with_connection_close(served: tuple[int, str]) -> None:
    """Past the bound the server does not read the body; its answer says it closes the connection.

    A raw socket, which reads the early answer as a client that watches the connection does
    (http.client would still be writing the body into a socket the server has shut).
    """
    port, token = served
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/scim+json\r\nContent-Length: {MAX_DRAINED_BYTES + 1}\r\n\r\n"
                     .encode() + b"{" + b" " * 65536)
        head = sock.recv(65536).split(b"\r\n\r\n")[0].decode().lower().split("\r\n")
    assert head[0].startswith("http/1.1 413") and "connection: close" in head, head
