"""The org's cap on mails to one address (identity.outbox.ensure_under_cap): an admin's resends, or
revoking and inviting again, stop at MAIL_CAP mails a day to one address, over the API and the
console alike, refused 429 with nothing written and the refusal audited; another org's mails to
the same address count for that org alone."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from audit import Actor
from audit.models import AuditEvent
from identity import invitations, orgs, outbox
from identity.db import Database
from identity.models import Invitation, OutboxMail
from identity.orgs import NewOrg
from tests.identity.test_console_forms import sign_in
from tests.identity.test_invitation_mail import auth  # noqa: F401  (fixture)

ADDRESS = "new@acme.test"


def mails_to(db: Database, org_id: str) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(OutboxMail).where(
            OutboxMail.org_id == org_id, OutboxMail.recipient == ADDRESS)) or 0


def refusals(db: Database, org_id: str) -> list[AuditEvent]:
    with db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.org_id == org_id,
                                                             AuditEvent.action == "mail.capped")))


def test_resending_past_the_cap_over_the_api_is_refused_429_and_writes_nothing(
        client: FlaskClient, db: Database, acme: NewOrg, auth: dict[str, str]) -> None:  # noqa: F811
    created = client.post("/api/v1/orgs/acme/invitations", json={"email": ADDRESS}, headers=auth)
    assert created.status_code == 201
    resend = f"/api/v1/orgs/acme/invitations/{created.json['id']}/resend"
    answers = [client.post(resend, headers=auth).status_code for _ in range(outbox.MAIL_CAP - 1)]
    assert answers == [200] * (outbox.MAIL_CAP - 1)
    with db.reading() as session:
        before = session.get_one(Invitation, created.json["id"]).secret_hash
    refused = client.post(resend, headers=auth)
    assert refused.status_code == 429, refused.json
    assert refused.content_type == "application/problem+json"
    assert refused.json["code"] == "mail_cap_reached" and refused.json["field"] == "email"
    assert 0 < int(refused.headers["Retry-After"]) <= 24 * 3600
    assert refused.json["retry_after_seconds"] == int(refused.headers["Retry-After"])
    with db.reading() as session:
        assert session.get_one(Invitation, created.json["id"]).secret_hash == before  # the old link still works
    assert mails_to(db, acme.org.id) == outbox.MAIL_CAP
    [event] = refusals(db, acme.org.id)
    assert event.outcome == "refused" and ADDRESS in event.changes["reason"]
    # Revoking and inviting again is one more mail to the same address: refused as well.
    assert client.delete(f"/api/v1/orgs/acme/invitations/{created.json['id']}", headers=auth).status_code == 204
    again = client.post("/api/v1/orgs/acme/invitations", json={"email": ADDRESS.upper()}, headers=auth)
    assert again.status_code == 429 and again.json["code"] == "mail_cap_reached"
    assert mails_to(db, acme.org.id) == outbox.MAIL_CAP and len(refusals(db, acme.org.id)) == 2


def test_resending_past_the_cap_in_the_console_shows_the_error_by_the_invitation_and_the_address(
        client: FlaskClient, db: Database, acme: NewOrg, system: Actor) -> None:
    with db.transaction() as session:
        invitation, _ = invitations.invite(session, system, acme.org.id, email=ADDRESS)
    token = sign_in(client, db, acme.owner.id)
    resend = f"/console/members/invitations/{invitation.id}/resend"
    answers = [client.post(resend, data={"csrf_token": token}).status_code for _ in range(outbox.MAIL_CAP - 1)]
    assert answers == [303] * (outbox.MAIL_CAP - 1)
    refused = client.post(resend, data={"csrf_token": token})
    assert refused.status_code == 429
    assert re.search(rf'id="invitation-{invitation.id}-error" role="alert">{ADDRESS} has been sent',
                     refused.get_data(as_text=True))
    assert client.post(f"/console/members/invitations/{invitation.id}/revoke",
                       data={"csrf_token": token}).status_code == 303
    review = client.post("/console/members/invite/preview",
                         data={"csrf_token": token, "email": ADDRESS, "role": "member"})
    assert review.status_code == 429  # told at the review step, before Send
    assert re.search(rf'id="email-error" role="alert">{ADDRESS} has been sent', review.get_data(as_text=True))
    invite = client.post("/console/members/invite", data={"csrf_token": token, "email": ADDRESS, "role": "member"})
    assert invite.status_code == 429
    assert re.search(rf'id="email-error" role="alert">{ADDRESS} has been sent', invite.get_data(as_text=True))
    assert mails_to(db, acme.org.id) == outbox.MAIL_CAP and len(refusals(db, acme.org.id)) == 2


def test_each_org_has_its_own_cap_and_another_orgs_mails_do_not_count_against_it(
        db: Database, acme: NewOrg, system: Actor) -> None:
    with db.transaction() as session:
        rival = orgs.create_org(session, system, "Rival", owner_email="mallory@rival.test")
        invitation, _ = invitations.invite(session, system, rival.org.id, email=ADDRESS)
    for _ in range(outbox.MAIL_CAP - 1):
        with db.transaction() as session:
            invitations.resend(session, system, rival.org.id, invitation.id)
    assert mails_to(db, rival.org.id) == outbox.MAIL_CAP
    with db.transaction() as session:
        mine, _ = invitations.invite(session, system, acme.org.id, email=ADDRESS)  # Rival's mails are Rival's
    for _ in range(outbox.MAIL_CAP - 1):
        with db.transaction() as session:
            invitations.resend(session, system, acme.org.id, mine.id)
    with db.transaction() as session, pytest.raises(outbox.MailCapReached) as refused:
        invitations.resend(session, system, acme.org.id, mine.id)  # acme's own cap, counted apart
    assert "another" not in refused.value.message and mails_to(db, acme.org.id) == outbox.MAIL_CAP
