"""Provisioning a member: the statements it sends, and the userName rule it keeps with fewer of them."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from audit import Actor
from identity import emails, orgs, seats, users
from identity.db import Database
from identity.errors import Conflict
from identity.models import User, UserEmail
from identity.orgs import NewOrg
from identity.service import run
from tests.factories import actions, provision
from tests.statements import audit_at_commit, new_member_rows, statements

# The org lock (which reads the Default team's id in the same statement), then the member's rows:
# the seat (a purchase: acme has 3 seats and these are the 2nd to 4th members: the ledger row, then
# the org's counters), the user row with its seat flag already set, its email's row
# (identity.emails), both grants (one statement on PostgreSQL, five on SQLite), then the audit
# chain at commit.
PROVISION = ["SELECT orgs"]


def test_provisioning_a_member_statements(db: Database, acme: NewOrg, system: Actor) -> None:
    provision(db, system, acme.org.id, "two@acme.test")
    provision(db, system, acme.org.id, "three@acme.test")
    with statements(db) as sent:
        user = provision(db, system, acme.org.id, "four@acme.test", source="scim")
    assert sent == PROVISION + new_member_rows(db) + audit_at_commit(db)
    assert user.has_seat
    assert actions(db, acme.org.id)[-3:] == ["user.created", "seat.purchased", "seat.assigned"]


def test_taken_user_name_is_a_conflict_that_changes_nothing(db: Database, acme: NewOrg, system: Actor) -> None:
    provision(db, system, acme.org.id, "alice@acme.test")
    before = actions(db, acme.org.id)
    with pytest.raises(Conflict) as taken:
        run(db, system, users.provision_user, acme.org.id, user_name="ALICE@acme.test", source="scim")
    assert taken.value.context == {"field": "userName"}
    assert actions(db, acme.org.id) == before


def test_taken_user_name_is_a_conflict_even_when_the_seat_cap_is_reached(db: Database, system: Actor) -> None:
    # An IdP re-sending a create for a member it already made must learn "exists" (409), which
    # it links, and not "no seat" (the seat cap is checked before the row is written).
    with db.transaction() as session:
        full = orgs.create_org(session, system, "Full", owner_email="owner@full.test", max_seats=1)
    provision(db, system, full.org.id, "staged@full.test", active=False)  # takes no seat
    with pytest.raises(Conflict):
        run(db, system, users.provision_user, full.org.id, user_name="Staged@full.test", source="scim")
    assert "seat.refused" not in actions(db, full.org.id)


def test_provisioned_user_is_the_session_object_of_its_row(db: Database, acme: NewOrg, system: Actor) -> None:
    # The row goes in as a plain INSERT: the returned User must still be what this transaction's
    # later reads find, with nothing left for a flush to write again.
    with db.transaction() as session:
        user = users.provision_user(session, system, acme.org.id, user_name="ann@acme.test", email="ann@acme.test",
                                    source="scim")
        with statements(db) as sent:
            assert session.get(User, user.id) is user
            assert users.get_user(session, acme.org.id, user.id) is user
            assert users.find_by_user_name(session, acme.org.id, "ANN@acme.test") is user
            assert not session.dirty and not session.new
        assert sent == ["SELECT users"]  # the lookup by name; by id, the identity map answers
        assert (user.has_seat, user.deleted_at, user.version) == (True, None, 1)
    with db.reading() as session:
        stored = session.get_one(User, user.id)
        assert (stored.user_name, stored.email, stored.has_seat, stored.source) == ("ann@acme.test", "ann@acme.test",
                                                                                    True, "scim")
        assert [row.value for row in session.scalars(select(UserEmail).where(UserEmail.user_id == user.id))] == [
            "ann@acme.test"]


@pytest.mark.parametrize("statement", [
    *users.INSERT_MEMBER.values(), users.INSERT_USER, users.INSERT_GRANTS,
    emails.INSERT_ROWS, users.LOCK_ORG_AND_DEFAULT_TEAM, seats.SAVE_SEATS, seats.INSERT_CHARGE,
], ids=[*(f"member, {emails} email, seat {len(seat)}" for emails, seat in users.INSERT_MEMBER), "user", "grants",
        "emails", "lock", "seats", "charge"])
def test_provisioning_statements_are_compiled_once(statement: Any) -> None:
    # A statement SQLAlchemy cannot cache (a multi-row VALUES, say) is compiled again on every
    # call, which costs more than the round trip it saves: each must have a cache key.
    assert statement._generate_cache_key() is not None
