"""`identity serve`: gunicorn in-process, so the one command needs nothing else installed."""

from __future__ import annotations

import logging.handlers
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from identity.web import metrics_serve
from identity.web.app import create_app
from identity.web.logs import JsonFormatter
from identity.web.unread_body import close_past_drain_bound


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


# Seconds an idle client connection stays open: longer than the 60 s idle timeout of common load
# balancers in front of the service, so that they never send a request on a connection the
# worker has just closed (which they answer with a 502).
KEEPALIVE_SECONDS = 75


def options(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """gunicorn's settings for `identity serve`.

    gthread workers keep client connections alive between requests, as the SCIM clients of an IdP
    and a load balancer's pool use them (sync workers close each one, so every request pays a
    new connection). An idle connection waits in the worker's poller, not in a thread; a thread
    is busy only while a request is read, run and answered. One thread per worker is the default:
    the work is CPU under the GIL, and more threads made creates slower in benchmarks/bench_scim.py.

    No access log: gunicorn's writes the raw request line, and a path can carry a secret (a
    sign-in link's token). The app logs every request itself, naming the route's rule instead
    (identity.web.app.route).

    A refusal sent before the request's body was read keeps the connection: the app reads the
    rest of the body (identity.web.unread_body), and a body too long to read is answered with
    `Connection: close` (the `pre_request` hook).

    The counters of `/metrics` are summed over the workers through `PROMETHEUS_MULTIPROC_DIR`,
    set up before the first worker starts (identity.web.metrics_serve, whose hooks these are).

    gunicorn's own lines are JSON, as the service's (`JsonLogger`).

    No control socket (gunicorn 25.1+ opens one by default at ~/.gunicorn/gunicorn.ctl): one path
    per user, so a second instance would take it over and the first to stop would unlink it under
    the other; nothing here uses it (signals and `identity` commands run the service).

    No forwarder headers (gunicorn's default trusts `SCRIPT_NAME` and `PATH_INFO` request headers
    from `forwarded_allow_ips`, 127.0.0.1 by default): BASE_URL alone says where the service is
    (identity.web.base_path, which also undoes a SCRIPT_NAME taken when gunicorn is run directly);
    with them a `SCRIPT_NAME` header the path did not start with was gunicorn's own 500.
    """
    return {"bind": f"{host}:{port}", "workers": workers, "worker_class": "gthread", "threads": threads,
            "keepalive": KEEPALIVE_SECONDS, "accesslog": None, "timeout": 60, "logger_class": JsonLogger,
            "control_socket_disable": True, "forwarder_headers": "",
            "pre_request": close_past_drain_bound,
            "on_starting": metrics_serve.on_starting, "when_ready": metrics_serve.when_ready,
            "child_exit": metrics_serve.child_exit, "on_exit": metrics_serve.on_exit}


def serve(host: str, port: int, workers: int, threads: int = 1) -> None:
    """Serve the app on host:port with `workers` gunicorn worker processes of `threads` threads."""
    _Server(options(host, port, workers, threads)).run()
