"""Review s22 (second, hostile): failing test, xfail strict: a connection lost at COMMIT is answered
as a transient conflict that "changed nothing" (identity.db.transient_kind), though the server may
have committed. Real PostgreSQL behind a real TCP relay that drops the connection once the server
has answered the COMMIT that follows a member's INSERT, before the answer reaches the service."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from audit import Actor
from identity import scim_credentials
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.app import create_app

pytestmark = pytest.mark.postgres_only("a PostgreSQL connection through a relay that drops it")


class CommitCutter:
    """A TCP relay to PostgreSQL that, once armed, ends a connection as the server answers the first
    COMMIT sent after an INSERT INTO users: the server has committed, the client never hears it."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = False
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            state = {"insert": False, "cut": False}
            threading.Thread(target=self._to_server, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._to_client, args=(server, client, state), daemon=True).start()

    def _to_server(self, client: socket.socket, server: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := client.recv(65536):
                if self.armed and b"INSERT INTO users" in data:
                    state["insert"] = True
                if self.armed and state["insert"] and b"COMMIT" in data:
                    self.armed, state["cut"] = False, True
                server.sendall(data)
        except OSError:
            pass

    def _to_client(self, server: socket.socket, client: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := server.recv(65536):
                if state["cut"]:  # the COMMIT's answer: the server committed; drop it and the connection
                    self.cuts += 1
                    for end in (client, server):
                        end.shutdown(socket.SHUT_RDWR)
                        end.close()
                    return
                client.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def relayed(db_url: str) -> Iterator[tuple[CommitCutter, str]]:
    parts = urlsplit(db_url)
    cutter = CommitCutter(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = f"{parts.username}@127.0.0.1:{cutter.port}" if parts.username else f"127.0.0.1:{cutter.port}"
    query = "&".join(q for q in (parts.query, "sslmode=disable") if q)
    yield cutter, urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    cutter.close()


def test_a_scim_create_answered_503_made_nothing(db: Database, system: Actor, acme: NewOrg,
                                                  relayed: tuple[CommitCutter, str]) -> None:
    cutter, url = relayed
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    through = Database(url)
    try:
        app = create_app({"DATABASE": through, "DATABASE_URL": url, "SECRET_KEY": "test-secret-key-32-characters-min",
                          "BASE_URL": "http://localhost", "TESTING": True})
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        user: dict[str, Any] = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                "userName": "newhire@acme.test", "active": True}
        cutter.armed = True
        first = client.post("/scim/v2/Users", json=user, headers=headers)
        assert cutter.cuts == 1, first.data  # the COMMIT after the member's INSERT was cut
        # Never a 503 "changed nothing: send it again": a 500 saying it may have been made, with the request id.
        assert first.status_code == 500, first.data
        detail = first.get_json()["detail"]
        assert "may have been made" in detail and first.headers["X-Request-Id"] in detail, detail
        assert "Retry-After" not in first.headers
        # The IdP's next attempt starts from its lookup, which finds the member made.
        found = client.get('/scim/v2/Users?filter=userName eq "newhire@acme.test"', headers=headers)
        assert found.status_code == 200 and found.get_json()["totalResults"] == 1, found.data
    finally:
        through.dispose()
