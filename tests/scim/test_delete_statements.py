"""A SCIM DELETE: the statements it sends (each one a round trip on PostgreSQL; issue 19 found the
delete at 0.12x of scim2-server, with 18 of them)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import users
from identity.db import Database
from tests.factories import actions
from tests.scim.client import Scim, scim_for
from tests.statements import audit_at_commit, statements

# The token, read in its own transaction; then the org lock, the user under it with its org role
# (read once: the If-Match, the last-owner check, the permission and the audit event), its keys
# revoked (one UPDATE that answers which, none here), sign-in sessions ended, grants and group
# memberships removed, the user's row written once, the seat freed, the audit chain. On PostgreSQL
# the removals and the user's row are one statement of data-modifying WITHs, and the user's read
# locks its groups (none here) and then its row (identity.member_removal.LOCK_MEMBER_WITH_ROLE), in the same
# statement: a group PATCH adding the user waits for the deletion, one taking it out never deadlocks.
# Before that read, a savepoint (one more round trip): when an add joined the user to a group below
# those locked while the deletion waited for the row, the deletion lets go of its groups and row and
# locks them again in id order, rather than wait for that group holding them (a sign-in locking both
# groups would deadlock with it). Last, the token again, FOR SHARE (scim_credentials.confirm_credential:
# a write that waited for a lock must not commit with a token revoked meanwhile).
DELETE = {"sqlite": ["SELECT scim_tokens", "SELECT orgs", "SELECT users", "UPDATE api_keys", "DELETE sso_sessions",
                     "DELETE role_grants", "DELETE idp_group_members", "UPDATE users", "UPDATE orgs",
                     "SELECT scim_tokens"],
          "postgresql": ["SELECT scim_tokens", "SELECT orgs", "SAVEPOINT member_locks", "SELECT idp_groups + SELECT users",
                         "DELETE sso_sessions + DELETE role_grants + UPDATE users + UPDATE api_keys"
                         " + DELETE idp_group_members + SELECT revoked", "UPDATE orgs", "SELECT scim_tokens"]}
# After the answer, in a transaction of its own: the org's provisioning status (identity.provisioning_log),
# the first success of its kind in this process, so the throttle lets it through; older rows forgotten.
STATUS_NOTE = ["INSERT provisioning_events", "DELETE provisioning_events"]


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme", included_seats=10)


def test_a_scim_delete_statements(scim: Scim, db: Database) -> None:
    user = scim.create_user("leaving@acme.test")
    with statements(db) as sent:
        assert scim.delete(f"/Users/{user['id']}").status_code == 204
    assert sent == DELETE[db.engine.dialect.name] + audit_at_commit(db) + STATUS_NOTE
    assert actions(db, scim.org_id)[-2:] == ["seat.released", "user.deleted"]
    assert scim.get(f"/Users/{user['id']}").status_code == 404


def test_an_owners_scim_delete_counts_the_owners_once(scim: Scim, db: Database, system: Actor) -> None:
    """An owner who is not the last: the org's owner grants locked and the owners counted once, by
    the check that would keep the last owner (identity.owners.would_remove_last_owner), not again by
    the deletion."""
    user = scim.create_user("co-owner@acme.test")
    with db.transaction() as session:
        users.change_role(session, system, scim.org_id, user["id"], "owner")
    with statements(db) as sent:
        assert scim.delete(f"/Users/{user['id']}").status_code == 204
    plain = DELETE[db.engine.dialect.name]
    read = 4 if db.dialect == "postgresql" else 3  # the statements up to the member's read, its locks
    # after them, once: the owner grants locked (FOR UPDATE), then the owners left counted
    assert sent == plain[:read] + ["SELECT role_grants", "SELECT role_grants"] + plain[read:] + audit_at_commit(db) + STATUS_NOTE
    assert actions(db, scim.org_id)[-2:] == ["seat.released", "user.deleted"]


def test_an_owners_scim_deactivation_counts_the_owners_once(scim: Scim, db: Database, system: Actor) -> None:
    """A PATCH active=false of an owner who is not the last (identity.user_profile.sync_user): the
    org's owner grants locked (FOR UPDATE) and the owners counted once, after the member's row
    (users.deactivate_user), not first by the check that keeps the last owner and then again."""
    user = scim.create_user("co-owner@acme.test")
    with db.transaction() as session:
        users.change_role(session, system, scim.org_id, user["id"], "owner")
    with statements(db) as sent:
        assert scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "active", "value": False}]).status_code == 200
    # ... the org's lock, the profile's role read, the member read and its row locked
    # (users._under_seat_lock), its role under the lock (users._locked_target: asked again there), then
    # once: the owner grants locked (FOR UPDATE), the owners left counted; the row written
    locked = sent.index("SELECT orgs")
    assert sent[locked:sent.index("UPDATE users")] == [
        "SELECT orgs", "SELECT role_grants", "SELECT users", "SELECT users",
        "SELECT role_grants", "SELECT role_grants", "SELECT role_grants", "SELECT role_grants"], sent
    assert actions(db, scim.org_id)[-1] == "user.deactivated"
