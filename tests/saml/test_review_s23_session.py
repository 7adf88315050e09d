"""Review s23 (session): the device cookie for sign-in links (saml.device_cookies, saml.links._bucket)."""

from __future__ import annotations

from flask import Flask

from audit import Actor
from identity import orgs
from identity.db import Database
from identity.orgs import NewOrg
from saml.connection import SpUrls
from tests.saml.conftest import Sso, configure
from tests.saml.idp import TestIdP
from tests.saml.test_device_cookie import OWNER, app, at, device_cookie, smtp  # noqa: F401  (fixtures)
from tests.saml.test_sign_in_by_email import BASE_URL, ask
from tests.smtp import Inbox


def test_another_orgs_idp_cannot_mint_a_device_cookie_for_a_victims_address(
        app: Flask, db: Database, system: Actor, acme: NewOrg, idp: TestIdP,  # noqa: F811
        smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    inbox, _ = smtp
    with db.transaction() as session:
        rival = orgs.create_org(session, system, "Rival", owner_email="mallory@rival.test")
    configure(db, rival.org.slug, idp, jit=True, allow_idp_initiated=True)  # Mallory's org trusts Mallory's IdP
    # The anonymous bucket of the victim's address is full: 30 asks from 10 client addresses.
    answers = [ask(at(app, f"2001:db8:{n}::1"), OWNER).status_code for n in range(10) for _ in range(3)]
    assert answers.count(200) == 30
    inbox.wait(30)
    assert ask(at(app, "198.51.100.77"), OWNER).status_code == 429  # the ceiling holds for a stranger
    sent = 0
    for n in range(2):  # each sign-in through her own IdP is a new device: a new bucket
        mallory = at(app, f"203.0.113.{n + 1}")
        sso = Sso(db, rival, idp, mallory, SpUrls.of(BASE_URL, rival.org.slug))
        assert sso.sp_login(name_id=OWNER).status_code == 303  # JIT: Rival's member "owner@acme.test"
        assert device_cookie(mallory)
        sent += sum(ask(mallory, OWNER).status_code == 200 for _ in range(3))  # org acme: the victim's
    inbox.wait(30 + sent)
    to_victim = [m for m in inbox.messages if m["To"] == OWNER]
    assert sent == 0 and len(to_victim) <= 30, f"{len(to_victim)} link mails to {OWNER} past the ceiling of 30"


def test_a_malformed_device_cookie_proves_nothing_and_breaks_nothing(
        app: Flask, acme: NewOrg, smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    browser = at(app, "192.0.2.10")
    browser.set_cookie("identity_device", "v1.\u00b2\u00b2\u00b2.device.mac")
    assert ask(browser, OWNER).status_code == 200
    smtp[0].wait(1)
