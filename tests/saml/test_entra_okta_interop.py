"""What real Entra ID and Okta tenants send over SAML: the member SCIM provisioned found by the
userName claim (Entra's UPN, not the mail), and the IdP's single logout messages over HTTP-POST.
Each uses the independent test IdP (tests/saml/idp.py); the interop review's first two failed before.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import uuid
import zlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree
from sqlalchemy import func, select

from audit import Actor
from identity import orgs, scim_credentials, users
from identity.models import SsoSession, User
from identity.web import cookies
from saml.models import SamlPendingRequest
from tests.factories import provision
from tests.saml.conftest import Sso, configure
from tests.saml.idp import MD, NSMAP, SAML, SAMLP, KeyPair, Options, saml_time
from tests.saml.test_sign_out_and_forms import logout_response_query
from tests.scim.client import USER, Scim

CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
UPN = "jdoe@contoso.com"  # user.userprincipalname
MAIL = "john.doe@contoso.com"  # user.mail: in many tenants not the UPN


def _users(sso: Sso) -> int:
    with sso.db.reading() as session:
        return session.scalar(select(func.count()).select_from(User).where(User.org_id == sso.org.org.id)) or 0


@pytest.mark.parametrize(("name_id", "name_id_format"), [
    (MAIL, EMAIL),  # Unique User Identifier = user.mail, format Email address
    ("6b1c2f9e-4a7d-4e0b-9c3a-2d5e8f1a7b40", PERSISTENT),  # Unique User Identifier = user.objectid, Persistent
], ids=["nameid-user.mail", "nameid-persistent-objectid"])
def test_entra_member_provisioned_by_upn_signs_in_to_that_member(sso: Sso, system: Actor, name_id: str,
                                                                 name_id_format: str) -> None:
    """Entra's SCIM provisioning writes userName from user.userprincipalname and the work email from
    user.mail (its default attribute mappings). Its SAML token carries, by default, the claims
    .../claims/name = user.userprincipalname and .../claims/emailaddress = user.mail; the Unique
    User Identifier (NameID) is whatever the admin picks, user.mail and user.objectid (Persistent)
    being the documented alternatives to the UPN.

    https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
    (default user attribute mapping: userPrincipalName -> userName, mail -> emails[type eq "work"].value)
    https://learn.microsoft.com/en-us/entra/identity-platform/saml-claims-customization
    (default claims; NameID formats and sources: Email address, Persistent, user.mail, user.objectid)

    With UPN != mail the sign-in never finds the member SCIM made (it looks the userName up by
    the NameID, or by the email claim for a persistent NameID, and ignores the UPN claim): JIT
    creates a second member named by the mail address, takes and bills another seat, and the
    person works without the teams and roles SCIM's groups gave the provisioned member.
    """
    with sso.db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, sso.org.org.id)
    scim = Scim(sso.client, token.secret, sso.org.org.id)
    provisioned = scim.post("/Users", {
        "schemas": [USER], "externalId": "6b1c2f9e-4a7d-4e0b-9c3a-2d5e8f1a7b40", "userName": UPN, "active": True,
        "emails": [{"primary": True, "type": "work", "value": MAIL}],
        "name": {"givenName": "John", "familyName": "Doe"}, "meta": {"resourceType": "User"}})
    assert provisioned.status_code == 201, provisioned.json
    before = _users(sso)
    answer = sso.sp_login(name_id=name_id, name_id_format=name_id_format, attributes={
        f"{CLAIMS}/emailaddress": [MAIL], f"{CLAIMS}/givenname": ["John"], f"{CLAIMS}/surname": ["Doe"],
        f"{CLAIMS}/name": [UPN]})
    assert answer.status_code == 303, answer.data[:300]
    assert sso.client.get("/me").json["id"] == provisioned.json["id"]
    assert _users(sso) == before  # no second member, no second seat


def _upn_member(sso: Sso, system: Actor, upn: str = UPN, mail: str = MAIL) -> User:
    """A member as Entra's SCIM provisions them: userName the UPN, email the mail."""
    return provision(sso.db, system, sso.org.org.id, upn, email=mail, source="scim")


def _me(sso: Sso) -> str | None:
    answer = sso.client.get("/me")
    return str(answer.json["id"]) if answer.status_code == 200 else None


def test_a_user_name_claim_and_a_name_id_naming_two_members_is_refused_as_ambiguous(sso: Sso, system: Actor) -> None:
    """The NameID (user.mail) names another live member than the UPN claim: the assertion does not say
    which one the person is, so neither is signed in (`ambiguous_user`), as a review showed the
    claim choosing could sign a member in as the owner (test_user_name_claim_ambiguity.py)."""
    _upn_member(sso, system)
    provision(sso.db, system, sso.org.org.id, MAIL)  # someone whose userName is John's mail
    assert sso.sp_login(name_id=MAIL, name_id_format=EMAIL, attributes={f"{CLAIMS}/name": [UPN]}).status_code == 403
    assert sso.client.get("/me").status_code == 401


def test_the_name_id_still_finds_a_member_the_claim_does_not_name(sso: Sso, system: Actor) -> None:
    """A member JIT made by the mail before the claim was read still signs in by it, no second member."""
    earlier = provision(sso.db, system, sso.org.org.id, MAIL)
    before = _users(sso)
    assert sso.sp_login(name_id=MAIL, name_id_format=EMAIL, attributes={f"{CLAIMS}/name": [UPN]}).status_code == 303
    assert _me(sso) == earlier.id and _users(sso) == before


def test_jit_names_the_new_member_by_the_user_name_claim(sso: Sso) -> None:
    """So that Entra's SCIM, turned on later, finds the member by userName instead of making another."""
    assert sso.sp_login(name_id=MAIL, name_id_format=EMAIL, attributes={f"{CLAIMS}/name": [UPN]}).status_code == 303
    me = sso.client.get("/me").json
    assert (me["userName"], me["email"]) == (UPN, MAIL)


def test_okta_names_its_own_user_name_attribute(sso: Sso, system: Actor) -> None:
    """Okta sends no UPN claim: its admin adds an attribute statement and names it in the connection."""
    configure(sso.db, sso.org.org.slug, sso.idp, attribute_map={"user_name": ["login"]})
    ann = provision(sso.db, system, sso.org.org.id, "ann.okta", email="ann@acme.test")
    answer = sso.sp_login(name_id="00u1ann", name_id_format=PERSISTENT,
                          attributes={"email": ["ann@acme.test"], "login": ["ann.okta"]})
    assert answer.status_code == 303 and _me(sso) == ann.id


def test_a_user_name_claim_does_not_enter_a_member_linked_to_a_persistent_name_id(sso: Sso, system: Actor) -> None:
    """John signed in once with his persistent NameID (user.objectid): he is linked to it. A sign-in with
    another NameID (email format, or another persistent one) whose UPN claim names him is refused."""
    john = _upn_member(sso, system)
    attributes = {f"{CLAIMS}/name": [UPN], f"{CLAIMS}/emailaddress": [MAIL]}
    assert sso.sp_login(name_id="objectid-john", name_id_format=PERSISTENT, attributes=attributes).status_code == 303
    assert _me(sso) == john.id
    sso.client.delete_cookie(cookies.COOKIE)
    before = _users(sso)
    for name_id, name_id_format in ((MAIL, EMAIL), ("objectid-other", PERSISTENT)):
        answer = sso.sp_login(name_id=name_id, name_id_format=name_id_format, attributes=attributes)
        assert answer.status_code == 403 and b"already linked" in answer.data
        assert _me(sso) is None
    assert _users(sso) == before


def test_a_removed_member_named_by_the_claim_is_not_signed_in_by_the_mail(sso: Sso, system: Actor) -> None:
    """The member SCIM provisioned was removed; a member named by the mail is not a way back in."""
    john = _upn_member(sso, system)
    provision(sso.db, system, sso.org.org.id, MAIL, email="other@contoso.com")
    with sso.db.transaction() as session:
        users.delete_user(session, system, sso.org.org.id, john.id)
    answer = sso.sp_login(name_id=MAIL, name_id_format=EMAIL, attributes={f"{CLAIMS}/name": [UPN]})
    assert answer.status_code == 403 and _me(sso) is None


def test_a_user_name_claim_with_bidi_characters_is_refused(sso: Sso, system: Actor) -> None:
    _upn_member(sso, system)
    before = _users(sso)
    answer = sso.sp_login(name_id=MAIL, name_id_format=EMAIL, attributes={f"{CLAIMS}/name": [UPN + "\u202e"]})
    assert answer.status_code == 400 and _users(sso) == before


def _logout_request_id(location: str) -> str:
    xml = zlib.decompress(base64.b64decode(parse_qs(urlsplit(location).query)["SAMLRequest"][0]), -15)
    return str(etree.fromstring(xml).get("ID"))


def test_okta_posts_its_logout_response_to_the_single_logout_url(sso: Sso) -> None:
    """Okta answers the SP's (signed) LogoutRequest by POSTing its LogoutResponse to the app's
    "Single Logout URL" (HTTP-POST binding, the signature inside the XML), whatever the SP's
    metadata lists.

    https://help.okta.com/oie/en-us/content/topics/apps/apps_single_logout.htm
    ("Single Logout URL — ... where Okta sends its sign out response (as a POST operation)")

    The configure output tells the IdP admin to paste /saml/<org>/slo there; that route takes GET
    only, so every sign-out through Okta ends on a 405 page instead of "You are signed out".
    """
    assert sso.sp_login(name_id="amy@acme.test", session_index="_idx-amy").status_code == 303
    answer = sso.sign_out()
    assert answer.status_code == 302 and answer.headers["Location"].startswith(sso.idp.slo_url)
    root = etree.Element(f"{{{SAMLP}}}LogoutResponse", nsmap=NSMAP, ID=f"_r{uuid.uuid4().hex}", Version="2.0",
                         IssueInstant=saml_time(dt.datetime.now(dt.UTC)), Destination=sso.urls.slo,
                         InResponseTo=_logout_request_id(answer.headers["Location"]))
    etree.SubElement(root, f"{{{SAML}}}Issuer").text = sso.idp.entity_id
    status = etree.SubElement(root, f"{{{SAMLP}}}Status")
    etree.SubElement(status, f"{{{SAMLP}}}StatusCode", Value="urn:oasis:names:tc:SAML:2.0:status:Success")
    signed = etree.tostring(sso.idp._signed(root, Options()))
    landed = sso.client.post(f"/saml/{sso.org.org.slug}/slo",
                             data={"SAMLResponse": base64.b64encode(signed).decode(), "RelayState": ""})
    assert landed.status_code == 200, landed.status_code
    assert b"You are signed out." in landed.data


# ---- single logout over HTTP-POST: taken once, and only what the IdP signed for us -------------

def _signed_out_by_idp_request(sso: Sso) -> str:
    """Sign in and press Sign out: return the id of the LogoutRequest our redirect carried to the IdP."""
    assert sso.sp_login(name_id="amy@acme.test", session_index="_idx-amy").status_code == 303
    answer = sso.sign_out()
    assert answer.status_code == 302
    return _logout_request_id(answer.headers["Location"])


def _post_slo(sso: Sso, xml: bytes, kind: str = "SAMLResponse", slug: str = "acme", **form: str) -> Any:
    return sso.client.post(f"/saml/{slug}/slo", data={kind: base64.b64encode(xml).decode(), **form})


def _pending(sso: Sso) -> int:
    with sso.db.reading() as session:
        return session.scalar(select(func.count()).select_from(SamlPendingRequest)) or 0


def _sso_sessions(sso: Sso) -> int:
    with sso.db.reading() as session:
        return session.scalar(select(func.count()).select_from(SsoSession)) or 0


def _clears_cookie(answer: Any) -> bool:
    return any(v.startswith(f"{cookies.COOKIE}=") for v in answer.headers.getlist("Set-Cookie"))


def test_the_sp_metadata_lists_single_logout_over_http_post(sso: Sso) -> None:
    root = etree.fromstring(sso.client.get("/saml/acme/metadata").data)
    services = root.findall(".//md:SPSSODescriptor/md:SingleLogoutService", {"md": MD})
    assert {(s.get("Binding"), s.get("Location")) for s in services} == {
        ("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect", sso.urls.slo),
        ("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST", sso.urls.slo)}


def _refusals(sso: Sso, other_keys: KeyPair, request_id: str) -> dict[str, bytes]:
    """LogoutResponses to our request that must all be refused, each for one reason."""
    idp, slo = sso.idp, sso.urls.slo
    tampered = etree.fromstring(idp.logout_xml("response", slo, in_response_to=request_id))
    tampered.set("InResponseTo", "_another")
    original = etree.fromstring(idp.logout_xml("response", slo, in_response_to="_signed-for-something-else"))
    wrapped = copy.deepcopy(original)  # signature wrapping: an unsigned copy around the signed original
    wrapped.set("ID", "_evil")
    wrapped.set("InResponseTo", request_id)
    etree.SubElement(wrapped, f"{{{SAMLP}}}Extensions").append(original)
    return {
        "unsigned": idp.logout_xml("response", slo, in_response_to=request_id, sign=False),
        "forged": idp.logout_xml("response", slo, in_response_to=request_id, options=Options(signer=other_keys)),
        "tampered": etree.tostring(tampered),
        "wrapped": etree.tostring(wrapped),
        "sha1": idp.logout_xml("response", slo, in_response_to=request_id,
                               options=Options(algorithm="rsa-sha1", digest="sha1")),
        "other-destination": idp.logout_xml("response", "http://localhost/saml/globex/slo", in_response_to=request_id),
        "no-destination": idp.logout_xml("response", None, in_response_to=request_id),
        "not-ours": idp.logout_xml("response", slo, in_response_to="_never-sent"),
        "no-in-response-to": idp.logout_xml("response", slo),
        "failed": idp.logout_xml("response", slo, in_response_to=request_id,
                                 status="urn:oasis:names:tc:SAML:2.0:status:Requester"),
        "doctype": b"<!DOCTYPE x [<!ENTITY e 'x'>]>" + idp.logout_xml("response", slo, in_response_to=request_id),
        "garbage": b"not xml",
    }


def test_a_posted_logout_response_is_refused_unless_the_idp_signed_it_for_our_request(sso: Sso,
                                                                                     other_keys: KeyPair) -> None:
    """Each refusal is a 400 that clears no cookie and uses nothing up: the IdP's real answer, after
    them all, is still taken."""
    request_id = _signed_out_by_idp_request(sso)
    pending = _pending(sso)
    for why, xml in _refusals(sso, other_keys, request_id).items():
        answer = _post_slo(sso, xml)
        assert (answer.status_code, _clears_cookie(answer)) == (400, False), why
        assert b"You are signed out." not in answer.data, why
        assert _pending(sso) == pending, why
    assert _post_slo(sso, sso.idp.logout_xml("request", sso.urls.slo, name_id="amy@acme.test"),
                     kind="SAMLResponse").status_code == 400  # a request in the response's field
    assert sso.client.post("/saml/acme/slo", data={}).status_code == 400
    genuine = _post_slo(sso, sso.idp.logout_xml("response", sso.urls.slo, in_response_to=request_id))
    assert genuine.status_code == 200 and b"You are signed out." in genuine.data


def test_a_posted_logout_response_is_taken_once(sso: Sso) -> None:
    request_id = _signed_out_by_idp_request(sso)
    xml = sso.idp.logout_xml("response", sso.urls.slo, in_response_to=request_id)
    assert _post_slo(sso, xml).status_code == 200
    again = _post_slo(sso, xml)
    assert again.status_code == 400 and not _clears_cookie(again)
    fresh = sso.idp.logout_xml("response", sso.urls.slo, in_response_to=request_id)  # a second answer: used up
    assert _post_slo(sso, fresh).status_code == 400


def test_a_logout_response_over_redirect_must_answer_our_request_too(sso: Sso) -> None:
    """The HTTP-Redirect binding takes the same checks: InResponseTo one of ours, once, and a
    Destination, when it has one, exactly ours (the toolkit takes a prefix)."""
    request_id = _signed_out_by_idp_request(sso)
    for query in (logout_response_query(sso.idp, sso.urls.slo, "_never-sent"),
                  logout_response_query(sso.idp, sso.urls.slo + "-elsewhere", request_id)):
        assert sso.client.get(f"/saml/acme/slo?{query}").status_code == 400
    query = logout_response_query(sso.idp, sso.urls.slo, request_id)
    assert sso.client.get(f"/saml/acme/slo?{query}").status_code == 200
    assert sso.client.get(f"/saml/acme/slo?{query}").status_code == 400  # replayed


def test_a_logout_response_over_redirect_may_come_without_a_destination(sso: Sso) -> None:
    """As before: not every IdP puts one in a redirected message; its InResponseTo ties it to us."""
    query = logout_response_query(sso.idp, None, _signed_out_by_idp_request(sso))
    assert sso.client.get(f"/saml/acme/slo?{query}").status_code == 200


def test_a_logout_response_for_another_org_is_refused_there(sso: Sso, system: Actor) -> None:
    """Globex trusts the same IdP (one Okta tenant, two apps): acme's answer posted to globex's URL."""
    with sso.db.transaction() as session:
        globex = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
    configure(sso.db, globex.org.slug, sso.idp, jit=True)
    request_id = _signed_out_by_idp_request(sso)
    for destination in (sso.urls.slo, f"http://localhost/saml/{globex.org.slug}/slo"):
        xml = sso.idp.logout_xml("response", destination, in_response_to=request_id)
        answer = _post_slo(sso, xml, slug=globex.org.slug)
        assert answer.status_code == 400 and not _clears_cookie(answer)
    assert _post_slo(sso, sso.idp.logout_xml("response", sso.urls.slo, in_response_to=request_id)).status_code == 200


def test_a_posted_logout_request_ends_the_sessions_it_names_and_is_answered(sso: Sso) -> None:
    assert sso.sp_login(name_id="amy@acme.test", session_index="_idx-amy").status_code == 303
    xml = sso.idp.logout_xml("request", sso.urls.slo, name_id="amy@acme.test", session_index="_idx-amy")
    answer = _post_slo(sso, xml, kind="SAMLRequest", RelayState="back-to-okta")
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == sso.idp.slo_url
    assert query["RelayState"] == ["back-to-okta"] and query["Signature"] and query["SigAlg"]
    ours = etree.fromstring(zlib.decompress(base64.b64decode(query["SAMLResponse"][0]), -15))
    assert ours.get("InResponseTo") == etree.fromstring(xml).get("ID")
    assert _sso_sessions(sso) == 0 and sso.client.get("/me").status_code == 401
    assert _post_slo(sso, xml, kind="SAMLRequest").status_code == 400  # replayed


def test_a_posted_logout_request_ends_nothing_unless_the_idp_signed_it(sso: Sso, other_keys: KeyPair) -> None:
    assert sso.sp_login(name_id="amy@acme.test", session_index="_idx-amy").status_code == 303
    idp, slo = sso.idp, sso.urls.slo
    tampered = etree.fromstring(idp.logout_xml("request", slo, name_id="bob@acme.test"))
    tampered.find(f"{{{SAML}}}NameID").text = "amy@acme.test"
    for why, xml in {
        "unsigned": idp.logout_xml("request", slo, name_id="amy@acme.test", sign=False),
        "forged": idp.logout_xml("request", slo, name_id="amy@acme.test", options=Options(signer=other_keys)),
        "tampered": etree.tostring(tampered),
        "other-destination": idp.logout_xml("request", "http://localhost/saml/globex/slo", name_id="amy@acme.test"),
    }.items():
        answer = _post_slo(sso, xml, kind="SAMLRequest")
        assert (answer.status_code, _clears_cookie(answer)) == (400, False), why
    assert _sso_sessions(sso) == 1 and sso.client.get("/me").status_code == 200
