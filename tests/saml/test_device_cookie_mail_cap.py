"""The org's cap on mails to one address (identity.outbox.ensure_under_cap) for sign-in links: another
org's owner whose IdP signs in a member with the victim's address gets a device bucket per sign-in
(saml.links._bucket) and could ask for "Sign in to <her org>" links without end, each a mail to the
victim; past the cap no mail goes, and the ask answers as before. A stranger's anonymous asks stay
outside the cap, so that they cannot silence the member's own browser."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import orgs, outbox
from identity.db import Database
from identity.orgs import NewOrg
from saml.connection import SpUrls
from tests.saml.conftest import Sso, configure
from tests.saml.idp import TestIdP
from tests.saml.test_device_cookie import OWNER, app, at, device_cookie, signed_in_browser, smtp  # noqa: F401
from tests.saml.test_sign_in_by_email import BASE_URL, ask, shape
from tests.smtp import Inbox

DEVICES, ASKS = 4, 3  # each device asks 3 times from its own client address: under every existing limit


def test_a_rival_orgs_device_buckets_mail_the_victim_no_more_than_the_cap(
        app: Flask, db: Database, system: Actor, acme: NewOrg, idp: TestIdP,  # noqa: F811
        smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    inbox, _ = smtp
    with db.transaction() as session:
        rival = orgs.create_org(session, system, "Rival", owner_email="mallory@rival.test")
    configure(db, rival.org.slug, idp, jit=True, allow_idp_initiated=True)  # Mallory's org trusts Mallory's IdP
    answers = []
    for n in range(DEVICES):  # each sign-in through her own IdP is a new device: a new bucket
        mallory = at(app, f"203.0.113.{n + 1}")
        sso = Sso(db, rival, idp, mallory, SpUrls.of(BASE_URL, rival.org.slug))
        assert sso.sp_login(name_id=OWNER).status_code == 303  # JIT: Rival's member "owner@acme.test"
        assert device_cookie(mallory)
        answers += [ask(mallory, OWNER, org=rival.org.slug) for _ in range(ASKS)]
    assert DEVICES * ASKS > outbox.MAIL_CAP
    assert {(a.status_code, shape(a, OWNER)) for a in answers} == {(200, shape(answers[0], OWNER))}  # all alike
    inbox.wait(outbox.MAIL_CAP)
    with db.reading() as session:
        capped = list(session.scalars(select(AuditEvent).where(AuditEvent.org_id == rival.org.id,
                                                               AuditEvent.action == "mail.capped")))
    assert len(capped) == DEVICES * ASKS - outbox.MAIL_CAP
    to_victim = [m for m in inbox.messages if m["To"] == OWNER and m["Subject"] == "Sign in to Rival"]
    assert len(to_victim) == outbox.MAIL_CAP, f"{len(to_victim)} link mails to {OWNER} past the cap"


def test_a_strangers_anonymous_asks_do_not_fill_the_cap_against_the_members_own_browser(
        app: Flask, acme: NewOrg, smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    inbox, _ = smtp
    owners = signed_in_browser(app, inbox, OWNER, "192.0.2.10")  # one mail: an anonymous ask, then the device's
    strangers = [ask(at(app, f"2001:db8:{n}::1"), OWNER).status_code for n in range(4) for _ in range(3)]
    assert strangers == [200] * 12 and 12 > outbox.MAIL_CAP
    inbox.wait(13)
    assert ask(owners, OWNER).status_code == 200
    inbox.wait(14)  # her own browser's link still goes out
