"""The health check's deadline (identity.db_health): a check that does not end in time fails, and
while it still waits the next one fails at once, so a load balancer's probes never pile up threads."""

from __future__ import annotations

import threading
import time

import pytest

from identity.db_health import BoundedCheck, HealthCheckTimeout


def test_a_check_still_waiting_makes_the_next_fail_at_once_without_a_thread_more() -> None:
    released = threading.Event()
    bounded = BoundedCheck(deadline=0.2)
    with pytest.raises(HealthCheckTimeout):
        bounded.run(released.wait)
    threads = threading.active_count()
    started = time.monotonic()
    with pytest.raises(HealthCheckTimeout, match="previous"):
        bounded.run(lambda: None)
    assert time.monotonic() - started < 0.1 and threading.active_count() == threads
    released.set()
    time.sleep(0.05)
    bounded.run(lambda: None)  # the server answered again: so does the check


def test_a_check_that_fails_in_time_raises_its_own_error() -> None:
    def refused() -> None:
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError):
        BoundedCheck(deadline=1).run(refused)
