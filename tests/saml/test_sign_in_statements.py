"""The statements a sign-in sends: each is a round trip on PostgreSQL, and ACS has a budget (issue #5).

A change that adds a query to the sign-in path fails here first. The lists are the same on
SQLite and PostgreSQL but for the audit chain's, which PostgreSQL sends as one statement fewer.
"""

from __future__ import annotations

import pytest

from audit import Actor
from identity import sessions
from saml import once
from tests.factories import provision
from tests.saml.conftest import Sso
from tests.statements import audit_at_commit, new_member_rows, statements

# The connection's version (is it the one the signature was checked with?), the replay cache, the
# member, the session row, then the audit chain at commit.
RETURNING = ["SELECT saml_connections", "INSERT saml_seen_assertions", "SELECT users", "INSERT sso_sessions"]
# The same, with provisioning in between: no such member, none removed (one lookup), the org lock
# with the Default team's id, then the member's rows (tests.statements.new_member_rows): the seat
# (a purchase: acme's 3 included seats are taken; the ledger row, then the org's counters), the
# user, its email's row (identity.emails), its grants.
JIT_BEFORE = ["SELECT saml_connections", "INSERT saml_seen_assertions", "SELECT users", "SELECT orgs"]
JIT_AFTER = ["INSERT sso_sessions"]


@pytest.fixture(autouse=True)
def _no_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Expired replay-cache ids and sessions are swept by chance, 1 sign-in in 64: not in these counts."""
    monkeypatch.setattr(once, "PURGE_PROBABILITY", 0.0)
    monkeypatch.setattr(sessions, "PURGE_ONE_IN", 2**62)


def _fill_included_seats(sso: Sso, system: Actor) -> None:
    for name in ("two@acme.test", "three@acme.test"):
        provision(sso.db, system, sso.org.org.id, name)


def test_returning_member_sign_in_statements(sso: Sso, system: Actor) -> None:
    provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert sso.post(sso.response(name_id="warm@acme.test")).status_code == 303  # the connection is cached
    with statements(sso.db) as sent:
        assert sso.post(sso.response(name_id="ann@acme.test")).status_code == 303
    assert sent == RETURNING + audit_at_commit(sso.db)


def test_first_sign_in_with_jit_provisioning_statements(sso: Sso, system: Actor) -> None:
    _fill_included_seats(sso, system)
    assert sso.post(sso.response(name_id="warm@acme.test")).status_code == 303
    with statements(sso.db) as sent:
        assert sso.post(sso.response(name_id="new@acme.test")).status_code == 303
    assert sent == JIT_BEFORE + new_member_rows(sso.db) + JIT_AFTER + audit_at_commit(sso.db)


def test_returning_member_whose_groups_did_not_change_statements(sso: Sso, system: Actor) -> None:
    groups = {"groups": ["Engineering", "Operations", "Everyone"]}
    assert sso.post(sso.response(name_id="ann@acme.test", attributes=groups)).status_code == 303  # JIT, groups made
    sso.sign_out()
    with statements(sso.db) as sent:
        assert sso.post(sso.response(name_id="ann@acme.test", attributes=groups)).status_code == 303
    # The group mapping still runs on every sign-in: the named groups in one query, the member's groups.
    assert sent == RETURNING[:3] + ["SELECT idp_groups", "SELECT idp_group_members"] + RETURNING[3:] + \
        audit_at_commit(sso.db)
