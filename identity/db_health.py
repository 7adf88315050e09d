"""The health check's deadline on PostgreSQL (identity.db.Database.answers).

A server that stops answering on a connection already open (hung, SIGSTOPped, a path that drops
its answers) is bounded by nothing else: the connect timeout is spent, the statement_timeout is the
server's own, and the kernel of a hung server still acknowledges what is sent, so neither libpq's
`tcp_user_timeout` nor TCP keepalives notice it. The check's query runs on a thread of its own and
the caller waits for it HEALTH_CHECK_DEADLINE_SECONDS at most. One check's thread runs at a time:
a check that arrives while another's runs (two load balancer nodes probing together, or a check
waiting a moment for a pooled connection) waits for that one to end, within its own deadline, then
runs its own. A check past its deadline keeps its thread (and its pooled connection) until the
server answers or the connection dies; while it does, the next check fails at once instead of
starting another thread, so a load balancer probing every second costs one thread, never one per probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Past this, /healthz answers 503: a load balancer's own timeout is commonly 5 s.
HEALTH_CHECK_DEADLINE_SECONDS = 3.0


class HealthCheckTimeout(TimeoutError):
    """The database did not answer the health check within its deadline."""


class BoundedCheck:
    """Run a check on a thread and wait for it a bounded time; at most one such thread at a time."""

    def __init__(self, deadline: float = HEALTH_CHECK_DEADLINE_SECONDS) -> None:
        self.deadline = deadline
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None
        self._ends = 0.0  # time.monotonic() at which the running thread's caller gives up on it

    def run(self, check: Callable[[], None]) -> None:
        """Run `check`; raise what it raised, or HealthCheckTimeout when it has not ended in time."""
        end = time.monotonic() + self.deadline
        outcome: list[BaseException | None] = []

        def target() -> None:
            try:
                check()
                outcome.append(None)
            except BaseException as error:  # noqa: BLE001 - handed to the caller, who decides
                outcome.append(error)

        thread = self._start(target, end)
        thread.join(max(0.0, end - time.monotonic()))
        if not outcome:
            with self._lock:  # given up now, whatever the clock said to join: the next check is refused at once
                if self._running is thread:
                    self._ends = min(self._ends, time.monotonic())
            raise HealthCheckTimeout(f"the database did not answer within {self.deadline:g} s")
        if outcome[0] is not None:
            raise outcome[0]

    def _start(self, target: Callable[[], None], end: float) -> threading.Thread:
        """Start `target` on the one thread, once the check running there (if any) has ended, waiting
        for it until `end`: a check still within its deadline is a healthy one, not a reason to fail.
        One already past its deadline is a server that does not answer: fail at once, no thread more."""
        while True:
            with self._lock:
                running = self._running
                if running is None or not running.is_alive():
                    # A daemon: a worker that exits must not wait for a server that does not answer.
                    thread = threading.Thread(target=target, name="identity-health-check", daemon=True)
                    # Its caller's own deadline: once that caller has given up (a 503), the next check
                    # is refused at once, measured on the same clock reading, never late by a hair.
                    self._running, self._ends = thread, end
                    thread.start()
                    return thread
                if time.monotonic() >= self._ends:
                    raise HealthCheckTimeout("the database has not answered the previous health check yet")
            running.join(max(0.0, end - time.monotonic()))
            if running.is_alive() and time.monotonic() >= end:
                raise HealthCheckTimeout(f"the database did not answer the check before this one within "
                                         f"{self.deadline:g} s")
