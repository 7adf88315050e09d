"""`identity serve`: gunicorn in-process, so the one command needs nothing else installed."""

from __future__ import annotations

import logging.handlers
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from identity.web import metrics_serve
from identity.web.app import create_app
from identity.web.logs import JsonFormatter


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app()


class JsonLogger(Logger):  # type: ignore[misc]
    """gunicorn's own log (a worker booted, exiting, killed at its timeout, a signal handled) in the
    service's JSON lines (identity.web.logs), so that stderr is JSON lines only.

    gunicorn's `logger_class`, not a `logconfig_dict`: with a logging config gunicorn turns its
    access log on, whose request line carries a path's secrets (a sign-in link's token).
    Only the handlers gunicorn made for its error log are changed; syslog keeps its format."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            if getattr(handler, "_gunicorn", False) and not isinstance(handler, logging.handlers.SysLogHandler):
                handler.setFormatter(JsonFormatter())


def options(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """gunicorn's settings for `identity serve`: those of its configuration module,
    identity.web.metrics_serve (also the README's gunicorn command's, where they and their reasons
    are), with the address, the workers and the threads of its command line. The counters of
    `/metrics` are summed over the workers through that module's hooks."""
    return {**metrics_serve.settings(), "bind": f"{host}:{port}", "workers": workers, "threads": threads}


def serve(host: str, port: int, workers: int, threads: int = 1) -> None:
    """Serve the app on host:port with `workers` gunicorn worker processes of `threads` threads."""
    _Server(options(host, port, workers, threads)).run()
