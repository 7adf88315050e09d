"""Hostile review (session 18) of a request under way racing a change of who it acts as (PostgreSQL,
real concurrent transactions): the caller's role and credential are read at the request's start and
trusted after a lock wait. Each test asserts the rule and failed on the code it was written against."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import scim_credentials, users
from identity.db import Database
from identity.models import ScimToken, User
from identity.orgs import NewOrg
from tests.factories import in_thread, provision, wait_for_a_lock_wait
from tests.identity.test_api_sessions import sign_in
from tests.scim.client import USER, scim_for

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


def _events(db: Database, org_id: str) -> list[tuple[str, str | None, Any]]:
    with db.reading() as session:
        return [(event.action, event.actor_id, event.target_id) for event in session.scalars(
            select(AuditEvent).where(AuditEvent.org_id == org_id).order_by(AuditEvent.seq))]


def test_a_write_under_way_in_a_session_of_an_admin_being_demoted_is_not_made_with_the_admin_role(
        db: Database, client: FlaskClient, acme: NewOrg, system: Actor) -> None:
    """Ann, an admin, deactivates Bob from her browser session while an owner demotes her to member.
    verify_session reads her role (admin) before the demotion commits; her deactivation authorises
    with it (`target_of`) and then waits for the org's lock that the demotion holds. Once the demotion
    commits, the deactivation goes on: Bob deactivated by a member, whose event (`user.deactivated`
    by Ann) follows `member.role_changed` of Ann to member. No serial order gives that: the demotion
    first makes her request a 403."""
    org_id = acme.org.id
    ann = provision(db, system, org_id, "ann@acme.test", role="admin")
    bob = provision(db, system, org_id, "bob@acme.test", role="member")
    browser = sign_in(db, ann.id)
    browserless = client.application.test_client(use_cookies=False)  # the cookie its headers name, no jar
    answers: list[Any] = []
    errors: list[BaseException] = []

    def deactivate_bob() -> None:
        answers.append(browserless.patch(f"/api/v1/orgs/{acme.org.slug}/members/{bob.id}", json={"active": False},
                                    headers=browser.headers()))

    with db.transaction() as session:
        users.change_role(session, system, org_id, ann.id, "member")
        writer = in_thread(deactivate_bob, errors)
        wait_for_a_lock_wait(db, "Ann's deactivation of Bob")  # for the org's lock
    writer.join(30)
    assert not writer.is_alive() and errors == [], errors
    with db.reading() as session:
        bob_active = session.get_one(User, bob.id).active
    assert bob_active and answers[0].status_code == 403, (
        f"a member (demoted before her write committed) deactivated Bob: {answers[0].status_code}; "
        f"audit: {_events(db, org_id)[-3:]}")


def test_a_scim_request_under_way_with_a_token_being_revoked_makes_no_member(
        db: Database, client: FlaskClient, system: Actor) -> None:
    """An owner revokes a leaked SCIM token while a POST /Users with it is under way: the POST's token
    check read the token unrevoked, and its provisioning waits for the org's lock (another IdP worker's
    POST under way holds it). The revocation commits, then that worker; the POST goes on: a member made
    by a token revoked before the member's creation committed (`scim_token.revoked` then `user.created`
    by that token in the chain)."""
    scim = scim_for(db, client, system, "Acme", included_seats=10)
    with db.reading() as session:
        token_id = session.scalars(select(ScimToken.id).where(ScimToken.org_id == scim.org_id)).one()
    answers: list[Any] = []
    errors: list[BaseException] = []
    with db.transaction() as worker:  # another POST /Users of the org, under way: it holds the org's lock
        users.provision_user(worker, system, scim.org_id, user_name="other@acme.test", source="scim")
        with db.transaction() as session:
            scim_credentials.revoke_scim_token(session, system, scim.org_id, token_id)
            poster = in_thread(lambda: answers.append(scim.post("/Users", {"schemas": [USER],
                                                                            "userName": "mallory@acme.test"})), errors)
            wait_for_a_lock_wait(db, "the POST")  # for the org's lock
    poster.join(30)
    assert not poster.is_alive() and errors == [], errors
    with db.reading() as session:
        made = session.scalars(select(User.id).where(User.org_id == scim.org_id,
                                                     User.user_name == "mallory@acme.test")).first()
    assert made is None and answers[0].status_code == 401, (
        f"a revoked SCIM token made {made} ({answers[0].status_code}); audit: {_events(db, scim.org_id)[-4:]}")
