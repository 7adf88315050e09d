"""A TCP relay to PostgreSQL that drops a connection at a chosen moment of a write: as the server
answers the COMMIT that follows a statement (the server committed; the client never hears it), or
as the statement itself is sent (the server never sees it: nothing changed). For the tests of a
connection lost at COMMIT (identity.db.CommitUnknown) and before it (identity.db.transient_kind)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit


class CommitCutter:
    """A TCP relay to PostgreSQL that, once armed, ends a connection as the server answers the first
    COMMIT sent after a statement holding `after` (INSERT INTO users unless told): the server has
    committed, the client never hears it. With `before_commit`, it ends the connection instead as that
    statement is sent, which the server never sees."""

    def __init__(self, host: str, port: int, after: bytes = b"INSERT INTO users", before_commit: bool = False) -> None:
        self.upstream = (host, port)
        self.after, self.before_commit = after, before_commit
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
                if self.armed and self.after in data:
                    if self.before_commit:  # the statement never reaches the server
                        self.armed, self.cuts = False, self.cuts + 1
                        self._close(client, server)
                        return
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
                    self._close(client, server)
                    return
                client.sendall(data)
        except OSError:
            pass

    @staticmethod
    def _close(client: socket.socket, server: socket.socket) -> None:
        for end in (client, server):
            end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


@contextmanager
def relayed_url(db_url: str, after: bytes = b"INSERT INTO users",
                before_commit: bool = False) -> Iterator[tuple[CommitCutter, str]]:
    """A relay to the database of `db_url` (CommitCutter) and the URL that reaches it through the relay."""
    parts = urlsplit(db_url)
    cutter = CommitCutter(parts.hostname or "127.0.0.1", parts.port or 5432, after, before_commit)
    netloc = f"{parts.username}@127.0.0.1:{cutter.port}" if parts.username else f"127.0.0.1:{cutter.port}"
    query = "&".join(q for q in (parts.query, "sslmode=disable") if q)
    try:
        yield cutter, urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    finally:
        cutter.close()
