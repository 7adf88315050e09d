"""Keep a keep-alive connection usable after an answer that did not read the request's body.

A refusal is often sent before the body is read: 413 for a body over MAX_CONTENT_LENGTH (werkzeug
refuses on the Content-Length alone), 401 before authentication, 404 and 405 before any handler.
An IdP's SCIM client sends the body whole, reads the answer, and sends its next request on the
same connection. gunicorn announces `Connection: keep-alive`, then discards at most 64 KiB of an
unread body and closes the connection when more is left: the client's next request meets a
closed socket ("server disconnected", a broken pipe).

So `DrainUnreadBody` reads and discards what the app left of a body, up to `MAX_DRAINED_BYTES`,
before the answer is sent, and the connection stays where the next request starts. A body
declared longer than that is not worth reading: `close_past_drain_bound`, gunicorn's `pre_request`
hook in `identity serve`, marks its connection to close, so that the answer says
`Connection: close`, which is the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

MAX_DRAINED_BYTES = 16 * 1024 * 1024  # 16 times the largest body the service reads (identity.config)
_CHUNK = 64 * 1024

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _declared_length(environ: dict[str, Any]) -> int | None:
    try:
        return max(0, int(environ.get("CONTENT_LENGTH") or ""))
    except ValueError:
        return None


class _CountedInput:
    """`wsgi.input` as the app sees it, counting what the app reads."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.read_bytes = 0

    def _count(self, data: bytes) -> bytes:
        self.read_bytes += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._count(self.stream.read() if size is None or size < 0 else self.stream.read(size))

    def readline(self, size: int | None = -1) -> bytes:
        return self._count(self.stream.readline() if size is None or size < 0 else self.stream.readline(size))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self._count(line) for line in self.stream.readlines(hint)]

    def __iter__(self) -> _CountedLines:
        return _CountedLines(self)

    def discard(self, declared: int | None) -> None:
        """Read and drop the rest of the body: up to its declared length, or (None) to the end of a
        chunked body, which the server's input ends, at most MAX_DRAINED_BYTES in all."""
        budget = MAX_DRAINED_BYTES - self.read_bytes
        left = budget if declared is None else min(declared - self.read_bytes, budget)
        while left > 0:
            data = self.read(min(_CHUNK, left))
            if not data:
                return
            left -= len(data)


class _CountedLines:
    """Iterating over a counted input, line by line (WSGI's `wsgi.input` is iterable)."""

    def __init__(self, counted: _CountedInput) -> None:
        self.counted = counted

    def __iter__(self) -> _CountedLines:
        return self

    def __next__(self) -> bytes:
        line = self.counted.readline()
        if not line:
            raise StopIteration
        return line


class DrainUnreadBody:
    """WSGI middleware: after the app answered, and before the answer is sent, read what it left of the body."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        declared = _declared_length(environ)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if (declared is None and not chunked) or (declared is not None and declared > MAX_DRAINED_BYTES):
            return self.app(environ, start_response)  # no body, or one the server closes the connection on
        counted = _CountedInput(environ["wsgi.input"])
        environ["wsgi.input"] = counted
        answer = self.app(environ, start_response)
        try:
            counted.discard(None if chunked else declared)
        except OSError:
            pass  # the client went away: there is no connection left to keep
        return answer


def close_past_drain_bound(worker: Any, req: Any) -> None:
    """gunicorn's `pre_request` hook: a body declared longer than MAX_DRAINED_BYTES closes its
    connection after the answer, and the answer says so (`Connection: close`)."""
    for name, value in req.headers:
        length = value.strip()
        if name == "CONTENT-LENGTH" and length.isascii() and length.isdigit() and int(length) > MAX_DRAINED_BYTES:
            req.must_close = True
