"""gunicorn's configuration, the one both ways of running the service read: every setting
`identity serve` gives gunicorn is a name of this module (`settings()` collects them, as gunicorn
does for `-c python:identity.web.metrics_serve`), so the README's production command

    gunicorn -c python:identity.web.metrics_serve -w 4 -k gthread --threads 1 --keep-alive 75 wsgi:app

runs what `identity serve` runs (only the address, the workers and the threads come from their
command lines). The settings, and why, are below `_MADE_HERE`; the hooks keep the counters across
gunicorn's workers: the shared directory, dead workers, the separate listener.

- `on_starting` (in the master, before any worker): `PROMETHEUS_MULTIPROC_DIR` is the operator's
  directory, emptied of an earlier run's counter files (prometheus_client's own, nothing else the
  folder holds), or a private temporary one. prometheus_client
  writes each worker's counters there and `/metrics` adds them up (identity.web.metrics).
- `child_exit`: a worker that died is marked dead. Its counters stay in the sum (a counter must
  never go down because a worker was recycled); only its live gauges would be dropped.
- `when_ready`: with `METRICS_PORT`, the master serves the summed counters on a listener of its
  own, `METRICS_HOST` (default 127.0.0.1) and that port, apart from the service's port. One that
  cannot be opened stops the master with an error line naming them (`identity serve` checks it
  before it migrates, `check_listener`; this is for a port taken since, or gunicorn run directly).
- `on_exit`: the temporary directory, if this module made it, is removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.config import Config

from identity.config import make_private_dir, metrics_host, metrics_port
from identity.web.metrics import MULTIPROC_ENV, summed_registry, worker_files
from identity.web.unread_body import close_past_drain_bound

log = logging.getLogger("identity.metrics")
_MADE_HERE = "IDENTITY_METRICS_DIR_MADE_HERE"

# gunicorn's settings (a lowercase name that is one of gunicorn's is read as its setting).
#
# gthread workers keep client connections alive between requests, as the SCIM clients of an IdP and
# a load balancer's pool use them (sync workers close each one, so every request pays a new
# connection). An idle connection waits in the worker's poller, not in a thread; a thread is busy
# only while a request is read, run and answered. One thread per worker: the work is CPU under the
# GIL, and more threads made creates slower in benchmarks/bench_scim.py.
worker_class = "gthread"
threads = 1
# Seconds an idle client connection stays open: longer than the 60 s idle timeout of common load
# balancers in front of the service, so that they never send a request on a connection the worker
# has just closed (which they answer with a 502).
keepalive = 75
timeout = 60  # a worker silent this long is killed and replaced
# No access log: gunicorn's writes the raw request line, and a path can carry a secret (a sign-in
# link's token). The app logs every request itself, naming the route's rule instead.
accesslog = None
# gunicorn's own lines are JSON, as the service's (identity.web.server.JsonLogger; named, not
# imported: that module imports this one).
logger_class = "identity.web.server.JsonLogger"
# A refusal sent before the request's body was read keeps the connection: the app reads the rest of
# the body (identity.web.unread_body), and a body too long to read is answered with
# `Connection: close` (this hook marks it).
pre_request = close_past_drain_bound
# No control socket (gunicorn 25.1+ opens one by default at ~/.gunicorn/gunicorn.ctl): one path per
# user, so a second instance would take it over and the first to stop would unlink it under the
# other; nothing here uses it (signals and `identity` commands run the service).
control_socket_disable = True
# No forwarder headers (gunicorn's default trusts `SCRIPT_NAME` and `PATH_INFO` request headers from
# `forwarded_allow_ips`, 127.0.0.1 by default): BASE_URL alone says where the service is
# (identity.web.base_path, which also undoes a SCRIPT_NAME taken anyway); with them a `SCRIPT_NAME`
# header the path did not start with was gunicorn's own 500.
forwarder_headers = ""


def prepare_directory() -> Path:
    """Make `PROMETHEUS_MULTIPROC_DIR` ready for a new set of workers and return it."""
    named = os.environ.get(MULTIPROC_ENV)
    if not named:
        folder = Path(tempfile.mkdtemp(prefix="identity-metrics-"))
        os.environ[MULTIPROC_ENV] = str(folder)
        os.environ[_MADE_HERE] = str(folder)
        return folder
    folder = Path(named)
    make_private_dir(folder)
    for stale in worker_files(folder):  # an earlier run's workers: their counts are not this run's
        stale.unlink(missing_ok=True)
    return folder


def start_listener(port: int, host: str = "127.0.0.1") -> Any:
    """Serve every worker's counters on host:port from this process (a thread); return the server."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=summed_registry(Path(os.environ[MULTIPROC_ENV])))
    log.info("metrics listener on %s:%d", host, port)
    return server


WILDCARDS = ("", "0.0.0.0", "::")


def check_listener(serving: tuple[str, int] | None = None) -> None:
    """Raise ValueError naming METRICS_HOST or METRICS_PORT when the listener they ask for cannot be
    opened: its address is bound, as the listener binds it, and let go at once.

    `serving` is the service's own (host, port), not bound yet when `identity serve` checks: the
    probe would find it free, and gunicorn's master then stop on 'Address already in use'."""
    port = metrics_port()
    if port is None:
        return
    host = metrics_host()
    if serving is not None and port == serving[1] and (host == serving[0] or host in WILDCARDS
                                                       or serving[0] in WILDCARDS):
        raise ValueError(f"METRICS_PORT {port} is the service's own port (--port): the /metrics listener needs "
                         "a port of its own")
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                                 flags=socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError) as error:  # socket.gaierror: no such name or address
        raise ValueError(f"METRICS_HOST must be an address of this host for the /metrics listener, not {host!r} "
                         f"({error})") from error
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server's listener does
        try:
            probe.bind(address)
        except OSError as error:
            raise ValueError(f"the /metrics listener cannot open METRICS_PORT {port} on METRICS_HOST {host}: "
                             f"{error.strerror or error}") from error


def on_starting(server: Any) -> None:
    prepare_directory()


def when_ready(server: Any) -> None:
    # gunicorn logs a halt's reason; halt() exits the master.
    try:
        port = metrics_port()
    except ValueError as error:  # gunicorn run directly: nothing checked it before
        server.halt(f"error: {error}", exit_status=1)
        return
    if port is None:
        return
    try:
        start_listener(port, metrics_host())
    except OSError as error:  # the port taken since identity serve's check, or never checked
        server.halt(f"error: the /metrics listener cannot open METRICS_PORT {port} on METRICS_HOST "
                    f"{metrics_host()}: {error.strerror or error}", exit_status=1)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    made = os.environ.pop(_MADE_HERE, None)
    if made and os.environ.get(MULTIPROC_ENV) == made:
        shutil.rmtree(made, ignore_errors=True)


def settings() -> dict[str, Any]:
    """Return gunicorn's settings this module makes, hooks included: its names that are gunicorn's,
    read as gunicorn reads a `python:` configuration module, so that `identity serve` (which passes
    them) and gunicorn run with `-c python:identity.web.metrics_serve` cannot differ."""
    known = Config().settings
    return {name: value for name, value in globals().items() if name in known}
