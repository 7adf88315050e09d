"""Valid sign-ins through the test client: SP- and IdP-initiated, JIT, existing members, attributes, audit."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree
from sqlalchemy import func, select

from audit import Actor
from audit.models import AuditEvent
from identity import users
from identity.models import Org, SeatCharge, User
from saml.views import MAX_LANDING
from tests.factories import actions, provision
from tests.saml.conftest import BASE_URL, Sso, configure

ENTRA = {
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress": ["carol@acme.test"],
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname": ["Carol"],
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname": ["Danvers"],
    "http://schemas.microsoft.com/identity/claims/displayname": ["Carol Danvers"],
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups": ["4f1c-obj-id", "8a2d-obj-id"],
}


def _user(sso: Sso, user_name: str) -> User | None:
    with sso.db.reading() as session:
        return users.find_by_user_name(session, sso.org.org.id, user_name)


def _events(sso: Sso, action: str) -> list[AuditEvent]:
    with sso.db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.org_id == sso.org.org.id,
                                                             AuditEvent.action == action).order_by(AuditEvent.seq)))


def test_sp_initiated_login_provisions_user_and_signs_in(sso: Sso) -> None:
    answer = sso.sp_login(name_id="alice@acme.test", attributes={"firstName": ["Alice"], "lastName": ["Liddell"],
                                                                   "groups": ["Engineering", "Everyone"]})
    assert answer.status_code == 303, answer.data
    assert answer.headers["Location"] == "/console/teams"
    me = sso.client.get("/me")
    assert me.status_code == 200
    assert me.json["userName"] == me.json["email"] == "alice@acme.test"
    assert me.json["org"]["slug"] == "acme"
    assert me.json["roles"] == ["member"]
    alice = _user(sso, "alice@acme.test")
    assert alice is not None and me.json["id"] == alice.id
    assert (alice.source, alice.given_name, alice.family_name, alice.has_seat) == ("saml", "Alice", "Liddell", True)
    tail = actions(sso.db, sso.org.org.id)
    assert tail.index("user.created") < tail.index("seat.assigned") < tail.index("sso.login_succeeded")
    event = _events(sso, "sso.login_succeeded")[-1]
    assert (event.target_type, event.target_id, event.actor_type, event.actor_id) == ("user", alice.id, "user", alice.id)
    assert event.changes["flow"] == "sp_initiated" and event.changes["jit_created"] is True
    assert event.changes["groups"] == ["Engineering", "Everyone"]


def test_idp_initiated_login_follows_safe_relay_state(sso: Sso) -> None:
    answer = sso.post(sso.response(name_id="dave@acme.test"), relay_state="/teams?tab=mine")
    assert answer.status_code == 303 and answer.headers["Location"] == "/teams?tab=mine"
    assert sso.client.get("/me").json["userName"] == "dave@acme.test"
    assert _events(sso, "sso.login_succeeded")[-1].changes["flow"] == "idp_initiated"


@pytest.mark.parametrize("relay_state", [
    "https://evil.example/phish", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
    "/\t/evil.example", "evil.example", "http://localhost.evil.example/x",
])
def test_relay_state_never_redirects_off_site(sso: Sso, relay_state: str) -> None:
    answer = sso.post(sso.response(name_id="erin@acme.test"), relay_state=relay_state)
    assert answer.status_code == 303 and answer.headers["Location"] == "/console/teams"


def test_relay_state_under_base_url_is_kept_as_a_path(sso: Sso) -> None:
    answer = sso.post(sso.response(name_id="erin@acme.test"), relay_state=f"{BASE_URL}/console")
    assert answer.headers["Location"] == "/console"


def test_sp_initiated_login_returns_to_the_page_asked_for_not_the_posted_relay_state(sso: Sso) -> None:
    request_id = sso.start_login(next_path="/keys")
    answer = sso.post(sso.response(in_response_to=request_id), relay_state="/elsewhere")
    assert answer.headers["Location"] == "/keys"


def test_a_next_path_longer_than_a_pending_request_keeps_lands_on_the_default(sso: Sso) -> None:
    """`next` is kept as the pending request's RelayState (saml.views.MAX_LANDING characters): the
    longest one is kept, one more lands on the default page, on SQLite as on PostgreSQL."""
    longest = "/" + "a" * (MAX_LANDING - 1)
    request_id = sso.start_login(next_path=longest)
    assert sso.post(sso.response(in_response_to=request_id)).headers["Location"] == longest
    request_id = sso.start_login(next_path=longest + "a")
    assert sso.post(sso.response(in_response_to=request_id)).headers["Location"] == "/console/teams"


def test_existing_member_signs_in_without_a_new_user_or_seat(sso: Sso, system: Actor) -> None:
    bob = provision(sso.db, system, sso.org.org.id, "Bob@Acme.test", source="scim")
    with sso.db.reading() as session:
        before = (session.scalar(select(func.count()).select_from(User)),
                  session.scalar(select(func.count()).select_from(SeatCharge)))
    assert sso.sp_login(name_id="bob@acme.test").status_code == 303
    assert sso.client.get("/me").json["id"] == bob.id
    with sso.db.reading() as session:
        after = (session.scalar(select(func.count()).select_from(User)),
                 session.scalar(select(func.count()).select_from(SeatCharge)))
    assert after == before
    assert _events(sso, "sso.login_succeeded")[-1].changes["jit_created"] is False


def test_member_found_by_email_attribute_when_name_id_is_opaque(sso: Sso, system: Actor) -> None:
    bob = provision(sso.db, system, sso.org.org.id, "bob@acme.test")
    answer = sso.sp_login(name_id="00u1abcdPERSISTENT", name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
                          attributes={"email": ["BOB@acme.test"]})
    assert answer.status_code == 303
    assert sso.client.get("/me").json["id"] == bob.id


def test_entra_claim_uris_are_understood(sso: Sso) -> None:
    answer = sso.sp_login(name_id="carol@acme.test", name_id_format=None, attributes=ENTRA)
    assert answer.status_code == 303
    carol = _user(sso, "carol@acme.test")
    assert (carol.email, carol.given_name, carol.family_name, carol.display_name) == \
        ("carol@acme.test", "Carol", "Danvers", "Carol Danvers")
    assert _events(sso, "sso.login_succeeded")[-1].changes["groups"] == ["4f1c-obj-id", "8a2d-obj-id"]


def test_attribute_names_are_configurable_per_org(sso: Sso) -> None:
    configure(sso.db, sso.org.org.slug, sso.idp, attribute_map={"given_name": ["custom_first"],
                                                                "groups": ["custom_groups"]})
    sso.sp_login(name_id="frank@acme.test", attributes={"custom_first": ["Frank"], "firstName": ["Wrong"],
                                                        "custom_groups": ["Ops"], "groups": ["Ignored"]})
    assert _user(sso, "frank@acme.test").given_name == "Frank"
    assert _events(sso, "sso.login_succeeded")[-1].changes["groups"] == ["Ops"]


def test_without_jit_an_unknown_user_is_refused(sso: Sso) -> None:
    configure(sso.db, sso.org.org.slug, sso.idp, jit=False)
    answer = sso.sp_login(name_id="nobody@acme.test")
    assert answer.status_code == 403 and b"not been provisioned" in answer.data
    assert _user(sso, "nobody@acme.test") is None
    assert _events(sso, "sso.login_failed")[-1].changes == {"reason": "user_not_provisioned"}


def test_seat_cap_refusal_is_a_clear_page_not_a_500(sso: Sso) -> None:
    with sso.db.transaction() as session:
        session.get(Org, sso.org.org.id).max_seats = 1  # the owner holds the only seat
    answer = sso.sp_login(name_id="gina@acme.test")
    assert answer.status_code == 403 and b"no free seat" in answer.data
    assert _user(sso, "gina@acme.test") is None
    assert sso.client.get("/me").status_code == 401
    tail = actions(sso.db, sso.org.org.id)[-2:]
    assert tail == ["seat.refused", "sso.login_failed"]
    assert _events(sso, "sso.login_failed")[-1].changes == {"reason": "seat_cap_reached"}


def test_user_deactivated_by_scim_cannot_sign_in(sso: Sso, system: Actor) -> None:
    hank = provision(sso.db, system, sso.org.org.id, "hank@acme.test", source="scim")
    with sso.db.transaction() as session:
        users.deactivate_user(session, system, sso.org.org.id, hank.id)
    answer = sso.sp_login(name_id="hank@acme.test")
    assert answer.status_code == 403 and b"deactivated" in answer.data
    failed = _events(sso, "sso.login_failed")[-1]
    assert (failed.target_type, failed.target_id, failed.changes) == ("user", hank.id, {"reason": "user_deactivated"})


def test_deleted_user_is_not_recreated_by_jit(sso: Sso, system: Actor) -> None:
    ivy = provision(sso.db, system, sso.org.org.id, "ivy@acme.test", source="scim")
    with sso.db.transaction() as session:
        users.delete_user(session, system, sso.org.org.id, ivy.id)
    assert sso.sp_login(name_id="ivy@acme.test").status_code == 403
    assert _user(sso, "ivy@acme.test") is None


def test_second_idp_certificate_is_trusted_during_rollover(sso: Sso, other_keys: Any) -> None:
    from tests.saml.idp import TestIdP

    configure(sso.db, sso.org.org.slug, TestIdP(sso.idp.entity_id, sso.idp.keys, extra_certs=[other_keys]))
    assert sso.sp_login(name_id="jo@acme.test", signer=other_keys).status_code == 303
    assert sso.sp_login(name_id="kim@acme.test").status_code == 303


@pytest.mark.parametrize("sign", ["response", "both"])
def test_signed_response_around_unsigned_assertion_is_accepted(sso: Sso, sign: str) -> None:
    assert sso.sp_login(name_id="lee@acme.test", sign=sign).status_code == 303
    assert sso.client.get("/me").status_code == 200


def test_audit_events_carry_no_assertion_content(sso: Sso) -> None:
    sso.sp_login(name_id="mo@acme.test", attributes={"firstName": ["SecretFirstName"]})
    sso.sp_login(name_id="mo@acme.test", sign="none", attributes={"firstName": ["SecretFirstName"]})
    with sso.db.reading() as session:
        dumped = str([(e.changes, e.target_display) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("sso.%")))])
    for secret in ("SecretFirstName", "SAMLResponse", "Signature", "BEGIN", "<"):
        assert secret not in dumped


def test_login_redirect_carries_an_authn_request_and_remembers_its_id(sso: Sso) -> None:
    answer = sso.client.get("/saml/acme/login")
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == sso.idp.sso_url
    assert "Signature" not in parse_qs(location.query)


def test_signed_authn_request_when_the_org_asks(sso: Sso) -> None:
    configure(sso.db, sso.org.org.slug, sso.idp, sign_authn_requests=True)
    raw_query = urlsplit(sso.client.get("/saml/acme/login").headers["Location"]).query
    query = parse_qs(raw_query)
    assert query["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    # SAML bindings 3.4.4.1: the signature covers "SAMLRequest=..&RelayState=..&SigAlg=.." as sent.
    raw = dict(part.split("=", 1) for part in raw_query.split("&"))
    signed = "&".join(f"{k}={raw[k]}" for k in ("SAMLRequest", "RelayState", "SigAlg") if k in raw).encode()
    metadata = etree.fromstring(sso.client.get("/saml/acme/metadata").data)
    body = metadata.findtext(".//{*}KeyDescriptor[@use='signing']//{*}X509Certificate")
    cert = x509.load_der_x509_certificate(base64.b64decode("".join(body.split())))
    cert.public_key().verify(base64.b64decode(query["Signature"][0]), signed, padding.PKCS1v15(), hashes.SHA256())


def test_unknown_org_is_404_page(sso: Sso) -> None:
    """As for an org without SSO; its metadata is served as an unconfigured org's (test_metadata_and_cli)."""
    for path in ("/saml/nope/login", "/saml/nope/slo"):
        answer = sso.client.get(path)
        assert answer.status_code == 404
        assert b"No SAML single sign-on is configured here." in answer.data
    assert sso.client.post("/saml/nope/acs", data={"SAMLResponse": "x"}).status_code == 404


def _team_names(sso: Sso, user_id: str) -> set[str]:
    from identity.models import Team

    with sso.db.reading() as session:
        ids = users.team_roles(session, user_id)
        return {session.get(Team, team_id).name for team_id in ids}


def test_groups_in_the_assertion_go_through_the_group_mapping_on_every_sign_in(sso: Sso) -> None:
    sso.sp_login(name_id="gus@acme.test", attributes={"groups": ["Engineering", "Everyone"]})
    gus = _user(sso, "gus@acme.test")
    assert {"Engineering", "Everyone"} <= _team_names(sso, gus.id)  # `mirror`: each group becomes a team
    assert _events(sso, "sso.login_succeeded")[-1].changes["groups_applied"] is True
    sso.sign_out()
    sso.sp_login(name_id="gus@acme.test", attributes={"groups": ["Everyone"]})
    names = _team_names(sso, gus.id)
    assert "Everyone" in names and "Engineering" not in names
    # An assertion without any groups attribute leaves memberships as they are.
    sso.sign_out()
    sso.sp_login(name_id="gus@acme.test")
    assert _team_names(sso, gus.id) == names
    assert _events(sso, "sso.login_succeeded")[-1].changes["groups_applied"] is False


def test_email_attribute_never_matches_another_members_account(sso: Sso, system: Actor) -> None:
    # Bob's userName is his UPN; someone whose IdP profile claims Bob's email must not become Bob.
    bob = provision(sso.db, system, sso.org.org.id, "bob.upn@corp.example", email="bob@acme.test")
    assert sso.sp_login(name_id="eve@acme.test", attributes={"email": ["bob@acme.test"]}).status_code == 303
    assert sso.client.get("/me").json["id"] != bob.id
