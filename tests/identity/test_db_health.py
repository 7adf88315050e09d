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


def test_a_check_arriving_while_a_healthy_one_runs_waits_for_it_then_answers() -> None:
    released = threading.Event()
    bounded = BoundedCheck(deadline=1)
    first = threading.Thread(target=bounded.run, args=(lambda: released.wait(0.3) and None,))
    first.start()
    time.sleep(0.05)
    threads = threading.active_count()
    ran: list[str] = []
    started = time.monotonic()
    bounded.run(lambda: ran.append("second"))  # not a 503: the first is within its deadline
    assert ran == ["second"] and 0.2 < time.monotonic() - started < 0.9
    assert threading.active_count() <= threads  # the second's thread only once the first's had ended
    first.join()


def test_a_check_waits_for_the_running_one_no_longer_than_its_own_deadline() -> None:
    released = threading.Event()
    bounded = BoundedCheck(deadline=0.4)
    first = threading.Thread(target=lambda: pytest.raises(HealthCheckTimeout, bounded.run, released.wait))
    first.start()
    time.sleep(0.2)
    started = time.monotonic()
    with pytest.raises(HealthCheckTimeout, match="before this one"):
        bounded.run(lambda: None)
    assert 0.3 < time.monotonic() - started < 0.6
    released.set()
    first.join()
