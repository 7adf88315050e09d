"""JSON log lines, each carrying the request id of the request that wrote it."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# What a client's own X-Request-Id may be to be kept beside ours (identity.web.app, identity.web.keycheck).
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


# What every LogRecord carries of its own; anything else on a record is a caller's `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line: time, level, logger, message, request id, then
    every field the caller passed in `extra=` (the request line's method, route, status,
    duration_ms, client_request_id; a failed mail's mail_id and error...). Callers pass no secret
    there: ids, codes and an error's kind, never a token, key, password or raw path."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            # Stamped on the record when it says so (a handler may format it later, elsewhere).
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: int = logging.INFO) -> None:
    """Send this service's logs to stderr as JSON lines (once per process)."""
    root = logging.getLogger("identity")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
