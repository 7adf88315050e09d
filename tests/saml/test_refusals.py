"""Every forged, stale, misdirected or replayed response is refused: 4xx, no session, no user, audited.

Each case starts from what the test IdP signs for real and gets exactly one thing wrong.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree
from signxml import XMLVerifier
from sqlalchemy import func, select

from audit import clock
from audit.models import AuditEvent
from identity import users
from identity.db import Database
from identity.models import User
from saml.models import SamlPendingRequest
from tests.factories import provision
from tests.saml.conftest import BASE_URL, Sso, configure
from tests.saml.idp import RESPONSE_SIGNED_XSW, XSW, KeyPair, Options, TestIdP, clone

MIN = dt.timedelta(minutes=1)


def _users(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(User)) or 0


def _failures(db: Database, org_id: str) -> list[dict[str, Any]]:
    with db.reading() as session:
        return [e.changes for e in session.scalars(select(AuditEvent).where(
            AuditEvent.org_id == org_id, AuditEvent.action == "sso.login_failed").order_by(AuditEvent.seq))]


def assert_refused(sso: Sso, answer: Any, reason: str | None = None, users_before: int | None = None) -> None:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.data[:500])
    assert answer.mimetype == "text/html"
    assert "identity_session" not in answer.headers.get("Set-Cookie", "")
    assert sso.client.get("/me").status_code == 401
    if users_before is not None:
        assert _users(sso.db) == users_before
    failures = _failures(sso.db, sso.org.org.id)
    assert failures, "a refused sign-in is an audit event"
    if reason is not None:
        assert failures[-1] == {"reason": reason}


def _comment_in_name_id(xml: bytes) -> bytes:
    # The attacker owns "owner@acme.test.evil.example" at the IdP; a naive SP reads text up to the comment.
    return xml.replace(b"owner@acme.test.evil.example", b"owner@acme.test<!---->.evil.example")


def _changed_attribute(xml: bytes) -> bytes:
    return xml.replace(b">Alice<", b">Mallory<")


DTD = b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'

# name -> (response options, post-signing change, expected audited reason)
CASES: dict[str, tuple[dict[str, Any], Callable[[bytes], bytes] | None, str]] = {
    "unsigned": ({"sign": "none"}, None, "unsigned"),
    "expired": ({"not_before": -20 * MIN, "not_on_or_after": -10 * MIN, "scd_not_on_or_after": -10 * MIN},
                None, "expired"),
    "expired subject confirmation": ({"scd_not_on_or_after": -1 * MIN}, None, "wrong_subject_confirmation"),
    "not yet valid": ({"not_before": 10 * MIN}, None, "not_yet_valid"),
    "wrong audience": ({"audience": "https://other.example/sp"}, None, "wrong_audience"),
    "no audience restriction": ({"audience": None}, None, "wrong_audience"),
    "wrong recipient": ({"recipient": "https://evil.example/acs"}, None, "wrong_subject_confirmation"),
    "recipient containing ours": ({"recipient": f"{BASE_URL}/saml/acme/acs/../acs"}, None, "wrong_recipient"),
    "no recipient": ({"recipient": None}, None, "wrong_recipient"),
    "no subject confirmation expiry": ({"scd_not_on_or_after": None}, None, "wrong_subject_confirmation"),
    "wrong destination": ({"destination": "https://evil.example/acs"}, None, "wrong_destination"),
    "destination starting with ours": ({"destination": f"{BASE_URL}/saml/acme/acs/evil"}, None, "wrong_destination"),
    "no destination": ({"destination": None}, None, "wrong_destination"),
    "wrong issuer": ({"issuer": "https://evil.example/idp"}, None, "wrong_issuer"),
    "empty NameID": ({"name_id": ""}, None, "no_name_id"),
    "lifetime longer than the replay cache keeps": ({"not_on_or_after": 48 * 60 * MIN,
                                                      "scd_not_on_or_after": 48 * 60 * MIN}, None,
                                                     "assertion_lifetime_too_long"),
    "response issued in the future": ({"response_issued": 6 * MIN}, None, "response_issued_in_future"),
    "assertion issued in the future": ({"assertion_issued": 6 * MIN}, None, "assertion_issued_in_future"),
    "response issued too long ago": ({"response_issued": -11 * MIN}, None, "response_too_old"),
    "assertion issued too long ago": ({"assertion_issued": -11 * MIN}, None, "assertion_too_old"),
    "sha1 signature": ({"algorithm": "rsa-sha1", "digest": "sha1"}, None, "deprecated_algorithm"),
    "unknown InResponseTo": ({"in_response_to": "_never_issued"}, None, "unknown_in_response_to"),
    "mismatched InResponseTo in confirmation": ({"scd_in_response_to": "_other"}, None,
                                                "wrong_subject_confirmation"),
    "comment injected into NameID": ({"name_id": "owner@acme.test.evil.example"}, _comment_in_name_id,
                                     "xml_comment_or_pi"),
    "DTD and external entity": ({}, lambda xml: DTD + xml, "dtd_forbidden"),
    "attribute changed after signing": ({"attributes": {"firstName": ["Alice"]}}, _changed_attribute,
                                        "invalid_signature"),
    "response changed after signing": ({"sign": "response", "attributes": {"firstName": ["Alice"]}},
                                       _changed_attribute, "invalid_signature"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forged_or_stale_response_is_refused(sso: Sso, case: str) -> None:
    options, change, reason = CASES[case]
    request_id = sso.start_login()
    options = {"in_response_to": request_id, **options}
    xml = sso.response(**options)
    if change is not None:
        changed = change(xml)
        assert changed != xml
        xml = changed
    before = _users(sso.db)
    assert_refused(sso, sso.post(xml), reason, before)


@pytest.mark.parametrize("issued", [4 * MIN, -9 * MIN], ids=["ahead within the skew", "old within age and skew"])
def test_issue_instants_within_the_clock_skew_are_accepted(sso: Sso, issued: dt.timedelta) -> None:
    # Defaults: 5 minutes of age plus python3-saml's 5 minutes of clock skew, either way.
    request_id = sso.start_login()
    answer = sso.post(sso.response(in_response_to=request_id, response_issued=issued, assertion_issued=issued))
    assert answer.status_code == 303, answer.data


def test_maximum_issue_age_is_configured_per_deployment(sso: Sso) -> None:
    sso.client.application.config["SAML_MAX_ISSUE_AGE_SECONDS"] = 60
    request_id = sso.start_login()
    before = _users(sso.db)
    assert_refused(sso, sso.post(sso.response(in_response_to=request_id, assertion_issued=-7 * MIN)),
                   "assertion_too_old", before)


def test_signed_by_another_key_is_refused(sso: Sso, other_keys: KeyPair) -> None:
    request_id = sso.start_login()
    before = _users(sso.db)
    assert_refused(sso, sso.post(sso.response(in_response_to=request_id, signer=other_keys)),
                   "invalid_signature", before)


@pytest.mark.parametrize("shape", list(XSW))
def test_signature_wrapping_is_refused(sso: Sso, shape: str) -> None:
    # The attacker holds a genuine response for their own account and rewraps it to claim the owner's.
    sign = "response" if shape in RESPONSE_SIGNED_XSW else "assertion"
    genuine = sso.response(name_id="mallory@acme.test", sign=sign)
    forged = XSW[shape](genuine, "owner@acme.test")
    assert b"owner@acme.test" in forged
    # The wrapped message still carries a cryptographically valid signature: a real attack, not noise.
    XMLVerifier().verify(forged, x509_cert=sso.idp.keys.cert_pem.decode(), id_attribute="ID",
                         expect_references=1, ignore_ambiguous_key_info=True)
    before = _users(sso.db)
    assert_refused(sso, sso.post(forged), None, before)
    assert _failures(sso.db, sso.org.org.id)[-1]["reason"] in {"wrong_number_of_assertions", "signature_structure"}


def test_replayed_assertion_is_refused(sso: Sso) -> None:
    xml = sso.response(name_id="bob@acme.test")  # IdP-initiated: no request id to use up
    assert sso.post(xml).status_code == 303
    sso.sign_out()
    before = _users(sso.db)
    assert_refused(sso, sso.post(xml), "replayed", before)


def test_replay_of_sp_initiated_response_is_refused(sso: Sso) -> None:
    request_id = sso.start_login()
    xml = sso.response(name_id="bob@acme.test", in_response_to=request_id)
    assert sso.post(xml).status_code == 303
    sso.sign_out()
    assert_refused(sso, sso.post(xml), "replayed")


def test_request_id_is_single_use(sso: Sso) -> None:
    request_id = sso.start_login()
    assert sso.post(sso.response(name_id="bob@acme.test", in_response_to=request_id)).status_code == 303
    sso.sign_out()
    # A second, freshly signed assertion answering the same request is refused.
    assert_refused(sso, sso.post(sso.response(name_id="bob@acme.test", in_response_to=request_id)),
                   "unknown_in_response_to")


def test_unsolicited_response_refused_when_org_disallows_idp_initiated(sso: Sso, idp: TestIdP) -> None:
    configure(sso.db, sso.org.org.slug, idp, allow_idp_initiated=False)
    before = _users(sso.db)
    assert_refused(sso, sso.post(sso.response()), "idp_initiated_not_allowed", before)


def test_sp_initiated_response_stripped_of_in_response_to_is_refused(sso: Sso) -> None:
    # The signed confirmation still names the request: dropping the response's InResponseTo does not help.
    request_id = sso.start_login()
    xml = sso.response(in_response_to=request_id, sign="assertion")
    root = clone(xml)
    del root.attrib["InResponseTo"]
    assert_refused(sso, sso.post(etree.tostring(root)), "in_response_to_mismatch")


def test_response_for_another_orgs_acs_is_refused(sso: Sso, idp: TestIdP, system: Any) -> None:
    from identity import orgs

    with sso.db.transaction() as session:
        globex = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
    configure(sso.db, "globex", idp, allow_idp_initiated=True)
    # Signed for globex's SP (audience, destination, recipient), posted to acme's ACS.
    xml = idp.response(f"{BASE_URL}/saml/globex/metadata", f"{BASE_URL}/saml/globex/acs", Options())
    before = _users(sso.db)
    assert_refused(sso, sso.post(xml), None, before)
    # And a response for acme posted to globex's ACS.
    answer = sso.post(sso.response(), slug="globex")
    assert answer.status_code in (400, 403)
    assert _users(sso.db) == before
    assert sso.client.get("/me").status_code == 401
    assert globex.org.id


def test_expired_idp_certificate_is_not_trusted(sso: Sso, idp_keys: KeyPair) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = KeyPair.make("expired", not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=1))
    configure(sso.db, sso.org.org.slug, TestIdP(sso.idp.entity_id, idp_keys, extra_certs=[expired]))
    request_id = sso.start_login()
    assert_refused(sso, sso.post(sso.response(in_response_to=request_id, signer=expired)), "invalid_signature")


def test_malformed_messages_are_400_not_500(sso: Sso) -> None:
    for data in ({"SAMLResponse": "not base64!"}, {"SAMLResponse": "PG5vdD54bWw="}, {}):
        answer = sso.client.post(f"/saml/{sso.org.org.slug}/acs", data=data)
        assert answer.status_code == 400, answer.data


def test_request_id_issued_for_another_org_is_refused(sso: Sso, idp: TestIdP, system: Any) -> None:
    from identity import orgs

    with sso.db.transaction() as session:
        orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
    configure(sso.db, "globex", idp)
    globex_request = TestIdP.authn_request_id(sso.client.get("/saml/globex/login").headers["Location"])
    assert_refused(sso, sso.post(sso.response(in_response_to=globex_request)), "unknown_in_response_to")


def test_metadata_whose_only_certificate_expired_is_refused(sso: Sso) -> None:
    from identity.errors import InvalidValue

    now = dt.datetime.now(dt.UTC)
    expired = KeyPair.make("expired", not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=1))
    with pytest.raises(InvalidValue, match="no IdP signing certificate is valid now"):
        configure(sso.db, sso.org.org.slug, TestIdP(sso.idp.entity_id, expired))


def test_mutated_responses_never_500_and_never_sign_in_anyone_else(sso: Sso) -> None:
    # Random byte flips, cuts and duplications of a genuinely signed response. A change inside the
    # unsigned KeyInfo may still verify (the configured certificate decides, not the embedded one),
    # so a success is allowed, but only as the one user the IdP signed for.
    rnd = random.Random(20261122)
    genuine = sso.response(name_id="fuzz@acme.test", sign="both", attributes={"groups": ["a"], "email": ["f@x"]})
    statuses = set()
    for _ in range(150):
        xml = bytearray(genuine)
        start = rnd.randrange(len(xml))
        end = min(len(xml), start + rnd.randint(1, 300))
        kind = rnd.choice(["flip", "cut", "duplicate"])
        if kind == "flip":
            xml[start] = rnd.randrange(32, 127)
        elif kind == "cut":
            del xml[start:end]
        else:
            xml[end:end] = xml[start:end]
        statuses.add(sso.post(bytes(xml)).status_code)
    assert all(status < 500 for status in statuses), statuses
    with sso.db.reading() as session:
        names = set(session.scalars(select(User.user_name)))
    assert names - {"owner@acme.test", "fuzz@acme.test"} == set()


def test_removed_member_is_not_recreated_by_jit(sso: Sso, system: Any) -> None:
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    with sso.db.transaction() as session:
        users.delete_user(session, system, sso.org.org.id, ann.id)
    before = _users(sso.db)
    answer = sso.post(sso.response(name_id="ANN@acme.test"))
    assert answer.status_code == 403
    assert_refused(sso, answer, "user_removed", before)


def test_member_provisioned_again_after_removal_signs_in(sso: Sso, system: Any) -> None:
    first = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    with sso.db.transaction() as session:
        users.delete_user(session, system, sso.org.org.id, first.id)
    again = provision(sso.db, system, sso.org.org.id, "ann@acme.test")  # the live member wins over the tombstone
    assert sso.post(sso.response(name_id="ann@acme.test")).status_code == 303
    assert sso.client.get("/me").json["id"] == again.id


def test_expired_request_id_is_refused_and_used_up(sso: Sso) -> None:
    request_id = sso.start_login()
    with sso.db.transaction() as session:
        session.get_one(SamlPendingRequest, request_id).expires_at = clock.now() - MIN
    assert_refused(sso, sso.post(sso.response(name_id="bob@acme.test", in_response_to=request_id)), "request_expired")
    with sso.db.reading() as session:
        assert session.get(SamlPendingRequest, request_id) is None


# Each value one character longer than its column (saml.service.check_lengths, saml.once.burn_assertion).
TOO_LONG: dict[str, dict[str, Any]] = {
    "NameID": {"name_id": "u" * 513, "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
               "attributes": {"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": ["gus@acme.test"]}},
    "SessionIndex": {"name_id": "gus@acme.test", "session_index": "_" + "s" * 256},
    "Assertion ID": {"name_id": "gus@acme.test", "assertion_id": "_" + "a" * 256},
    "family name": {"name_id": "gus@acme.test", "attributes": {"lastName": ["f" * 201]}},
    "group claim": {"name_id": "gus@acme.test", "attributes": {"groups": ["g" * 256]}},
}


@pytest.mark.parametrize("kind", list(TOO_LONG))
def test_a_value_longer_than_its_column_is_refused_on_every_database(sso: Sso, kind: str) -> None:
    """SQLite would keep it, PostgreSQL would raise: both refuse it with the page, audited, the
    request used up; nobody is made."""
    request_id = sso.start_login()
    before = _users(sso.db)
    answer = sso.post(sso.response(in_response_to=request_id, **TOO_LONG[kind]))
    assert_refused(sso, answer, "value_too_long", before)
    assert answer.status_code == 400 and "longer than this service keeps" in answer.get_data(as_text=True)
    with sso.db.reading() as session:
        assert session.get(SamlPendingRequest, request_id) is None


@pytest.mark.parametrize("length", [201, 255])
def test_a_group_claim_too_long_for_the_team_it_mirrors_to_is_refused_as_too_long(sso: Sso, length: int) -> None:
    """Under `group_sync = mirror` a group no rule governs becomes a team, whose names stop at 200: a
    claim of 201-255 characters fits the group but not its team, and is refused value_too_long (not
    invalid_value, whose page speaks of characters that are not allowed), audited, nobody made."""
    request_id = sso.start_login()
    before = _users(sso.db)
    answer = sso.post(sso.response(in_response_to=request_id, name_id="gus@acme.test",
                                   attributes={"groups": ["g" * length]}))
    assert_refused(sso, answer, "value_too_long", before)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and "longer than this service keeps" in page and "team" in page
    with sso.db.reading() as session:
        assert session.get(SamlPendingRequest, request_id) is None


def test_values_as_long_as_their_columns_sign_in(sso: Sso) -> None:
    """(A group claim as long as idp_groups' columns, 255, would mirror to a team, whose names stop at 200.)"""
    answer = sso.sp_login(name_id="gus@acme.test", session_index="_" + "s" * 255, assertion_id="_" + "a" * 255,
                          attributes={"firstName": ["g" * 200], "groups": ["G" * 200]})
    assert answer.status_code == 303, answer.get_data(as_text=True)
