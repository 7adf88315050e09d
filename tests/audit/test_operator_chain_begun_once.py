"""The operators' chain begins once, also when two processes begin it at the same moment
(`identity serve` settling after its migration beside `identity gateway credential create`)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from audit.actor import system_actor
from audit.log import OPERATOR_STREAM
from audit.models import AuditEvent
from identity import gateway
from identity.actions import Action
from identity.db import Database

pytestmark = pytest.mark.postgres_only("two transactions at once: SQLite's writers queue before BEGIN")


def test_two_transactions_beginning_the_chain_at_once_record_it_once(db: Database) -> None:
    first = db.transaction()
    session = first.__enter__()
    gateway.begin_chain(session, system_actor("serve"))  # not committed yet
    failures: list[BaseException] = []
    other = threading.Thread(target=_begin_and_commit, args=(db, failures))
    other.start()
    other.join(timeout=0.5)  # it waits for the first (or, unheld, has decided on its own by now)
    first.__exit__(None, None, None)
    other.join(timeout=10)
    assert not other.is_alive() and not failures, failures  # neither waits forever nor fails (the head made twice)
    with db.reading() as reading:
        begun = reading.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.org_id == OPERATOR_STREAM, AuditEvent.action == Action.OPERATOR_CHAIN_BEGUN))
    assert begun == 1


def _begin_and_commit(db: Database, failures: list[BaseException]) -> None:
    try:
        with db.transaction() as session:
            gateway.begin_chain(session, system_actor("gateway credential create"))
    except Exception as error:  # noqa: BLE001 - the test's thread reports what the service raised
        failures.append(error)
