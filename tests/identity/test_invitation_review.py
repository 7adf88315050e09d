"""Invitations (DESIGN.md 3.6) attacked by a hostile review: each test asserts the rule and failed
when it was written.

- an address compares through the one normalized key (DESIGN.md 5), so a live member's own email
  cannot be invited as a second account with a seat of its own;
- a revoked invitation's link never makes a member, however the acceptance and the revocation
  overlap on PostgreSQL;
- one org's request delivering another org's queued mail does not write its own key and its
  owner's address into that other org's audit log;
- an invitation expired by its org's deletion is not mailed afterwards;
- an invitation resent by a current owner can be accepted, whoever sent it first;
- an invitation goes to one address, not to "@" or to a list of addresses.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import keys, orgs, seats, users
from identity.db import Database
from identity.models import Invitation, OutboxMail, User
from identity.orgs import NewOrg
from identity.web.cli import main
from tests.factories import provision, wait_for_a_lock_wait
from tests.identity.test_invitation_mail import make_client
from tests.smtp import free_port, smtp_server


def _admin_key(db: Database, system: Actor, new: NewOrg) -> dict[str, str]:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, new.org.id, user_id=new.owner.id, team_id=new.default_team_id,
                                  name="owner", scopes=["admin"])
    return {"Authorization": f"Bearer {key.secret}"}


@pytest.fixture
def auth(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    return _admin_key(db, system, acme)


# --- A member's own email, in another case, invited as a second account -----------------------------------

@pytest.mark.parametrize("stored,invited", [
    ("JÖRG@acme.test", "JÖRG@acme.test"),     # the very same string: SQL lower() leaves Ö as it is
    ("JÖRG@acme.test", "jörg@acme.test"),
    ("STRASSE@acme.test", "straße@acme.test"),  # full case folding, as userName compares
])
def test_an_invitation_to_a_members_own_email_is_refused_whatever_its_case(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg, auth, stored: str, invited: str) -> None:
    """README: an invitation is "neither sent nor accepted for an address a live member has as userName
    or email (409: it would be a second account for the same person)". An IdP's member `jorg` with
    the email JÖRG@acme.test is found by an ASCII-only SQL lower() (lookups.find_by_address), not by
    the normalized key every other address comparison uses (DESIGN.md 5), so the invitation goes out
    and accepting it makes a second member, with a seat of its own, that no IdP deprovisioning reaches."""
    provision(db, system, acme.org.id, "jorg", email=stored, source="scim")
    answer = client.post("/api/v1/orgs/acme/invitations", json={"email": invited}, headers=auth)
    assert answer.status_code == 409, answer.json
    with db.reading() as session:
        assert session.scalars(select(Invitation)).all() == []


# --- Acceptance and revocation overlapping on PostgreSQL ---------------------------------------------------

@pytest.mark.postgres_only("SQLite's BEGIN IMMEDIATE serialises whole write transactions; the race needs two")
def test_a_revoked_invitation_never_makes_a_member_when_acceptance_and_revocation_overlap(
        app: Flask, client: FlaskClient, db: Database, system: Actor, acme: NewOrg, auth) -> None:
    """The invitee accepts while an admin revokes. The acceptance reads the invitation as pending
    (invitations._pending, no lock), then waits for the org's seat lock (held here by another seat
    change, as any SCIM push may hold it); the revocation takes no lock and commits; the acceptance
    goes on, makes the member and overwrites `revoked` with `accepted`. One of the two must win
    whole: revoked and no member, or accepted and the revocation refused."""
    sent = client.post("/api/v1/orgs/acme/invitations", json={"email": "dora@acme.test"}, headers=auth).json
    answers: dict[str, Any] = {}

    def accept() -> None:
        answers["accept"] = app.test_client().post("/api/v1/invitations/accept", json={"token": sent["token"]})

    def revoke() -> None:
        answers["revoke"] = app.test_client().delete(f"/api/v1/orgs/acme/invitations/{sent['id']}", headers=auth)

    with db.transaction() as holder:
        seats.lock_org(holder, acme.org.id)                      # a seat change in progress
        accepting = threading.Thread(target=accept)
        accepting.start()
        wait_for_a_lock_wait(db, "the acceptance")               # the acceptance waits for the org lock
        revoking = threading.Thread(target=revoke)
        revoking.start()
        revoking.join(2)                                         # done, or waiting for the acceptance
    accepting.join(30)
    revoking.join(30)
    accepted, revoked = answers["accept"].status_code, answers["revoke"].status_code
    with db.reading() as session:
        status = session.get_one(Invitation, sent["id"]).status
        made = session.scalars(select(User).where(User.user_name == "dora@acme.test")).all()
    outcome = (accepted == 201, revoked == 204, str(status), len(made))
    assert outcome in ((True, False, "accepted", 1), (False, True, "revoked", 0)), (accepted, revoked, status, made)
    assert 400 <= (revoked if accepted == 201 else accepted) < 500


# --- Another org's mail delivered under this org's key ------------------------------------------------------

def test_delivering_another_orgs_queued_mail_does_not_put_this_orgs_key_in_its_audit_log(
        db: Database, system: Actor, acme: NewOrg, auth) -> None:
    """Globex's invitation mail failed (SMTP down) and waits in the outbox. Acme's owner invites
    someone once SMTP is back: "the next send" retries the backlog of every org
    (identity.mail.deliver with the caller as actor), so Globex's `mail.sent` event names Acme's API
    key as its actor, with Acme's owner's address as display name. One org's audit log must not hold
    another org's credential or member; the backlog of another org is the service's act (a system
    actor), as `identity mail retry` records it."""
    with db.transaction() as session:
        globex = orgs.create_org(session, system, "Globex", owner_email="boss@globex.test")
    globex_auth = _admin_key(db, system, globex)
    port = free_port()
    client = make_client(db, f"smtp://127.0.0.1:{port}")
    queued = client.post("/api/v1/orgs/globex/invitations", json={"email": "x@globex.test"}, headers=globex_auth)
    assert queued.json["mail"]["status"] == "failed"
    with smtp_server(port) as (inbox, _):
        assert client.post("/api/v1/orgs/acme/invitations", json={"email": "y@acme.test"},
                           headers=auth).status_code == 201
        inbox.wait(2)
    with db.reading() as session:
        sent = session.scalars(select(AuditEvent).where(AuditEvent.org_id == globex.org.id,
                                                        AuditEvent.action == "mail.sent")).one()
    acme_keys = _key_ids(db, acme.org.id)
    assert sent.actor_id not in acme_keys and "acme" not in (sent.actor_display or ""), \
        (sent.actor_type, sent.actor_id, sent.actor_display)


def _key_ids(db: Database, org_id: str) -> set[str]:
    from identity.models import ApiKey

    with db.reading() as session:
        return set(session.scalars(select(ApiKey.id).where(ApiKey.org_id == org_id)))


# --- A deleted org's invitation still mailed ---------------------------------------------------------------

def test_a_deleted_orgs_queued_invitation_mail_is_never_sent(db: Database, system: Actor, acme: NewOrg, auth,
                                                             cli_env: dict[str, str]) -> None:
    """The invitation mail waits in the outbox (SMTP down); the owner deletes the org, which expires
    the invitation (org_lifecycle.delete_org -> invitations.expire) but leaves its mail queued, so
    `identity mail retry` later mails "You are invited to join Acme" for an org that is gone. A
    revoked, resent or swept invitation cancels its undelivered mail (outbox.cancel); an expiry
    by deletion (of the org, or of the invitation's team) must too."""
    smtp_port = free_port()  # nothing listens there yet
    client = make_client(db, f"smtp://127.0.0.1:{smtp_port}")
    sent = client.post("/api/v1/orgs/acme/invitations", json={"email": "dora@acme.test"}, headers=auth).json
    assert sent["mail"]["status"] == "failed"
    assert client.delete("/api/v1/orgs/acme", json={"confirm": "acme"}, headers=auth).status_code == 204
    with smtp_server(smtp_port) as (inbox, _):
        CliRunner(env={**cli_env, "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}"}).invoke(main, ["mail", "retry"])
        time.sleep(0.2)
        assert [m["To"] for m in inbox.messages] == []
    with db.reading() as session:
        assert session.scalars(select(OutboxMail.status)).one() == "cancelled"


# --- A resent invitation still refused for its first sender ------------------------------------------------

def test_an_invitation_an_owner_resent_is_accepted_after_its_first_sender_left(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg, auth) -> None:
    """Ada, an admin, invites x@acme.test and is removed. The acceptance is refused ("whoever sent this
    invitation may no longer invite at its role; ask an owner or an admin of the org for a new one"),
    so the owner does just that: Resend (console or API) answers 200 and mails a new link. But
    invitations.resend keeps `invited_by` (Ada), so the new link is refused the same way, again and
    again: the invitation that the members page offers to resend can never be accepted. The
    resender stands behind the new link (or the resend must be refused, saying to invite anew)."""
    ada = provision(db, system, acme.org.id, "ada@acme.test", role="admin")
    sent = client.post("/api/v1/orgs/acme/invitations", json={"email": "x@acme.test"},
                       headers=_admin_key(db, system, NewOrg(acme.org, ada, acme.default_team_id))).json
    with db.transaction() as session:
        users.delete_user(session, system, acme.org.id, ada.id)
    resent = client.post(f"/api/v1/orgs/acme/invitations/{sent['id']}/resend", headers=auth)
    if resent.status_code == 409:  # refused, saying to invite anew: honest too
        return
    assert resent.status_code == 200
    accepted = client.post("/api/v1/invitations/accept", json={"token": resent.json["token"]})
    assert accepted.status_code == 201, accepted.json


# --- Not one address -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("email", [" @ ", "dora@", "@acme.test", "dora@acme.test, eve@evil.test", "dora eve@acme.test"])
def test_an_invitation_is_for_one_email_address(client: FlaskClient, db: Database, acme: NewOrg, auth,
                                                email: str) -> None:
    """invitations.invite checks only that the text holds an "@": `@` alone is invited (and accepting it
    makes a member named "@"), and "dora@acme.test, eve@evil.test" is one invitation whose mail
    (identity.mail: the To header as given) goes to both, so its one-time link reaches an address
    nobody meant to invite. Bad input is a precise 400 that changes nothing."""
    answer = client.post("/api/v1/orgs/acme/invitations", json={"email": email}, headers=auth)
    assert answer.status_code == 400 and answer.json["field"] == "email", answer.json
    with db.reading() as session:
        assert session.scalars(select(Invitation)).all() == []
