"""Hostile review of the rewritten member deletion: a member with every kind of row, odd ids,
two deletions at once, an org's deletion; the log, the seats and the data agree afterwards."""

from __future__ import annotations

import threading

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import billing, keys, org_lifecycle, sessions, users
from identity.db import Database
from identity.errors import Unauthenticated
from identity.models import ApiKey, IdpGroupMember, Org, SsoSession, User
from identity.reconcile import reconcile
from identity.vocabulary import KeyStatus, SessionMethod
from tests.scim.client import Scim, scim_for


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme", included_seats=10)


def _member_with_everything(scim: Scim, db: Database, system: Actor, *, deactivate: bool) -> tuple[dict, dict,
                                                                                                  list[str]]:
    user = scim.create_user("full@acme.test")
    group = scim.create_group("Engineering", [user["id"]])
    with db.transaction() as session:
        team = sorted(users.team_roles(session, user["id"]))[0]
        first = keys.create_api_key(session, system, scim.org_id, user_id=user["id"], team_id=team, name="a",
                                    scopes=["inference"])
        second = keys.create_api_key(session, system, scim.org_id, user_id=user["id"], team_id=team, name="b",
                                     scopes=["inference"])
        rotated = keys.rotate_api_key(session, system, scim.org_id, second.id, grace_seconds=3600)
        sessions.create_session(session, session.get_one(User, user["id"]), method=SessionMethod.LOGIN_LINK,
                                lifetime=sessions.Lifetime())
    if deactivate:
        assert scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "active", "value": False}]
                          ).status_code == 200
    return user, group, [first.secret, second.secret, rotated.secret]


@pytest.mark.parametrize("deactivate", [False, True], ids=["active", "deactivated"])
def test_deleting_a_member_with_keys_sessions_and_groups(scim: Scim, db: Database, system: Actor,
                                                         deactivate: bool) -> None:
    user, group, secrets = _member_with_everything(scim, db, system, deactivate=deactivate)
    group_etag = scim.get(f"/Groups/{group['id']}").headers["ETag"]
    with db.reading() as session:
        seats_before = session.get_one(Org, scim.org_id).seats_used
        last = session.scalar(select(AuditEvent.seq).where(AuditEvent.org_id == scim.org_id)
                              .order_by(AuditEvent.seq.desc()).limit(1))
        prefixes = sorted(session.scalars(select(ApiKey.prefix).where(ApiKey.user_id == user["id"])))
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    with db.reading() as session:
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.org_id == scim.org_id,
                                                               AuditEvent.seq > last).order_by(AuditEvent.seq)))
        statuses = set(session.scalars(select(ApiKey.status).where(ApiKey.user_id == user["id"])))
        left = list(session.scalars(select(SsoSession.id).where(SsoSession.user_id == user["id"])))
        memberships = list(session.scalars(select(IdpGroupMember.group_id).where(
            IdpGroupMember.user_id == user["id"])))
        org = session.get_one(Org, scim.org_id)
        row = session.get_one(User, user["id"])
        assert (row.active, row.has_seat, row.deleted_at is not None) == (False, False, True)
        assert org.seats_used == seats_before - (0 if deactivate else 1)
        assert billing.check_org(session, scim.org_id) == []
        assert reconcile(session, scim.org_id) == []
        for secret in secrets:
            with pytest.raises(Unauthenticated):
                keys.verify_api_key(session, secret)
    assert [e.action for e in events] == ([] if deactivate else ["seat.released"]) + ["user.deleted"]
    assert sorted(events[-1].changes["keys_revoked"]) == (
        [p for p in prefixes] if not deactivate else prefixes)
    assert (statuses, left, memberships) == ({KeyStatus.REVOKED}, [], [])
    shown = scim.get(f"/Groups/{group['id']}")
    assert shown.headers["ETag"] != group_etag
    assert user["id"] not in [m["value"] for m in shown.json.get("members", [])]
    assert scim.get(f"/Users/{user['id']}").status_code == 404


@pytest.mark.parametrize("user_id", ["x" * 5000, "é" * 300, "ユーザー", "00000000-0000-0000-0000-000000000000"])
def test_odd_ids_are_404_on_scim_delete(scim: Scim, user_id: str) -> None:
    response = scim.delete(f"/Users/{user_id}")
    assert response.status_code == 404, response.get_data(as_text=True)[:300]
    assert response.json["status"] == "404"


def test_another_orgs_user_is_404_on_scim_delete(scim: Scim, db: Database, client: FlaskClient,
                                                  system: Actor) -> None:
    other = scim_for(db, client, system, "Globex", included_seats=10)
    victim = other.create_user("victim@globex.test")
    assert scim.delete(f"/Users/{victim['id']}").status_code == 404
    assert other.get(f"/Users/{victim['id']}").status_code == 200


@pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")
def test_two_deletions_of_one_member_at_once(scim: Scim, db: Database, system: Actor) -> None:
    user = scim.create_user("twice@acme.test")
    with db.reading() as session:
        seats_before = session.get_one(Org, scim.org_id).seats_used
    start, outcomes = threading.Barrier(2), []

    def delete() -> None:
        start.wait()
        try:
            with db.transaction() as session:
                users.remove_user(session, system, scim.org_id, user["id"])
            outcomes.append("deleted")
        except Exception as error:  # noqa: BLE001 - the outcome is the assertion
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=delete) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["NotFound", "deleted"]
    with db.reading() as session:
        assert session.get_one(Org, scim.org_id).seats_used == seats_before - 1
        assert billing.check_org(session, scim.org_id) == []
        assert reconcile(session, scim.org_id) == []


def test_org_deletion_deprovisions_every_member(scim: Scim, db: Database, system: Actor) -> None:
    _member_with_everything(scim, db, system, deactivate=False)
    with db.reading() as session:
        slug = session.get_one(Org, scim.org_id).slug
    with db.transaction() as session:
        org_lifecycle.delete_org(session, system, scim.org_id, confirm=slug)
    with db.reading() as session:
        org = session.get_one(Org, scim.org_id)
        assert org.seats_used == 0
        assert set(session.scalars(select(ApiKey.status).where(ApiKey.org_id == scim.org_id))) == {KeyStatus.REVOKED}
        assert list(session.scalars(select(User.id).where(User.org_id == scim.org_id,
                                                          User.deleted_at.is_(None)))) == []
        assert billing.check_org(session, scim.org_id) == []
        assert reconcile(session, scim.org_id) == []
        released = list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.org_id == scim.org_id, AuditEvent.action.in_(["seat.released", "user.deleted"]))))
        assert released.count("user.deleted") == 2 and released.count("seat.released") == 2
