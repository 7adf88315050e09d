"""Single sign-on through the admin API: `GET/PUT /api/v1/orgs/{org}/sso`, what `identity saml
configure` does, with the API key as the audited actor."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from identity import keys, orgs
from identity.db import Database
from identity.orgs import NewOrg
from saml.connection import cert_fingerprint
from saml.models import SamlConnection
from tests.factories import provision
from tests.saml.idp import KeyPair, TestIdP


@pytest.fixture
def keys_of(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    """Headers for acme's owner, an admin and a plain member of acme, and globex's owner."""
    member = provision(db, system, acme.org.id, "mo@acme.test")
    admin = provision(db, system, acme.org.id, "ad@acme.test", role="admin")
    with db.transaction() as session:
        globex = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
        made = {
            "owner": keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                         team_id=acme.default_team_id, name="o", scopes=["admin"]),
            "admin": keys.create_api_key(session, system, acme.org.id, user_id=admin.id,
                                         team_id=acme.default_team_id, name="a", scopes=["admin"]),
            "member": keys.create_api_key(session, system, acme.org.id, user_id=member.id,
                                          team_id=acme.default_team_id, name="m", scopes=["admin"]),
            "globex": keys.create_api_key(session, system, globex.org.id, user_id=globex.owner.id,
                                          team_id=globex.default_team_id, name="g", scopes=["admin"]),
        }
    return {name: f"Bearer {issued.secret}" for name, issued in made.items()}


def _put(client: FlaskClient, key: str, body: Any, org: str = "acme") -> Any:
    return client.put(f"/api/v1/orgs/{org}/sso", json=body, headers={"Authorization": key})


def _sso_events(db: Database) -> list[AuditEvent]:
    with db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action.like("sso.%"))
                                    .order_by(AuditEvent.seq)))


def _connection(db: Database, org_id: str) -> SamlConnection | None:
    with db.reading() as session:
        return session.get(SamlConnection, org_id)


def test_an_org_without_sso_shows_the_urls_the_idp_admin_needs(client: FlaskClient, keys_of: dict[str, str]) -> None:
    answer = client.get("/api/v1/orgs/acme/sso", headers={"Authorization": keys_of["owner"]})
    assert answer.status_code == 200, answer.json
    assert answer.json["configured"] is False and answer.json["idp"] is None and answer.json["require_sso"] is False
    assert answer.json["sp"]["acs_url"] == "http://localhost/saml/acme/acs"
    assert answer.json["sp"]["entity_id"] == answer.json["sp"]["metadata_url"] == "http://localhost/saml/acme/metadata"


def test_configuring_from_metadata_is_audited_with_the_key_as_actor_and_sign_in_starts(
        client: FlaskClient, db: Database, acme: NewOrg, keys_of: dict[str, str], idp_keys: KeyPair) -> None:
    idp = TestIdP("https://idp.example.test/metadata", idp_keys)
    answer = _put(client, keys_of["owner"], {"idp_metadata_xml": idp.metadata().decode(), "jit": False,
                                             "attribute_map": {"email": "mail", "groups": ["memberOf", "groups"]}})
    assert answer.status_code == 200, answer.json
    shown = answer.json["idp"]
    assert answer.json["configured"] is True and shown["entity_id"] == idp.entity_id
    assert shown["signing_cert_sha256"] == [cert_fingerprint(idp_keys.cert_b64)] and shown["jit"] is False
    assert shown["attribute_map"] == {"email": ["mail"], "groups": ["memberOf", "groups"]}
    assert client.get("/api/v1/orgs/acme/sso", headers={"Authorization": keys_of["owner"]}).json == answer.json
    (event,) = _sso_events(db)
    assert (event.action, event.actor_type, event.org_id) == ("sso.configured", "api_key", acme.org.id)
    started = client.get("/saml/acme/login")  # the SP now sends people to this IdP
    assert started.status_code == 302 and started.headers["Location"].startswith(idp.sso_url)

    again = _put(client, keys_of["owner"], {"idp_metadata_xml": idp.metadata().decode(), "jit": True})
    assert again.status_code == 200 and again.json["idp"]["jit"] is True
    assert again.json["idp"]["attribute_map"] == shown["attribute_map"]  # absent: unchanged
    updated = _sso_events(db)[-1]
    assert updated.action == "sso.updated" and updated.changes == {"jit": {"before": False, "after": True}}


@pytest.mark.parametrize("body", [
    {"idp_metadata_xml": "not xml at all"},
    {"idp_metadata_xml": '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'},
    {"idp_metadata_xml": "<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata' entityID='x'/>"},
    {"idp_metadata_xml": ""},
    {},
    {"idp_metadata_xml": 42},
    {"idp_metadata_xml": "<x/>", "jit": "yes"},
    {"idp_metadata_xml": "<x/>", "attribute_map": {"shoe_size": "s"}},
    {"idp_metadata_xml": "<x/>", "attribute_map": {"email": [1]}},
    {"idp_metadata_xml": "<x/>", "private_key": "mine"},
])
def test_bad_configuration_is_a_400_problem_and_changes_nothing(client: FlaskClient, db: Database, acme: NewOrg,
                                                                 keys_of: dict[str, str], body: Any) -> None:
    answer = _put(client, keys_of["owner"], body)
    assert answer.status_code == 400 and answer.content_type == "application/problem+json", answer.json
    assert _connection(db, acme.org.id) is None and _sso_events(db) == []


def test_an_admin_may_read_but_not_configure_and_a_member_neither(client: FlaskClient, db: Database, acme: NewOrg,
                                                                 keys_of: dict[str, str], idp_keys: KeyPair) -> None:
    """Whoever controls the IdP controls every identity: SSO is the owner's (DESIGN 3.2)."""
    metadata = TestIdP("https://idp.example.test/metadata", idp_keys).metadata().decode()
    assert client.get("/api/v1/orgs/acme/sso", headers={"Authorization": keys_of["admin"]}).status_code == 200
    assert client.get("/api/v1/orgs/acme/sso", headers={"Authorization": keys_of["member"]}).status_code == 403
    for who in ("admin", "member"):
        refused = _put(client, keys_of[who], {"idp_metadata_xml": metadata})
        assert refused.status_code == 403 and _connection(db, acme.org.id) is None


def test_another_orgs_key_never_reads_or_configures_sso(client: FlaskClient, db: Database, acme: NewOrg,
                                                        keys_of: dict[str, str], idp_keys: KeyPair) -> None:
    metadata = TestIdP("https://idp.example.test/metadata", idp_keys).metadata().decode()
    for org in ("acme", acme.org.id):
        assert client.get(f"/api/v1/orgs/{org}/sso", headers={"Authorization": keys_of["globex"]}).status_code == 404
        assert _put(client, keys_of["globex"], {"idp_metadata_xml": metadata}, org=org).status_code == 404
    assert _connection(db, acme.org.id) is None and _sso_events(db) == []
