"""Metadata URLs cannot reach inside our network: the SSRF rules of saml.metadata_fetch, and the
admin API's `idp_metadata_url`, over real HTTPS from a local server."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

import saml.metadata_fetch
from audit import Actor
from audit.models import AuditEvent
from identity import keys
from identity.db import Database
from identity.errors import InvalidValue
from identity.orgs import NewOrg
from saml.metadata_fetch import FAILED, LIMIT_BYTES, MAX_REDIRECTS, fetch_metadata
from saml.models import SamlConnection
from tests.factories import provision
from tests.saml.idp import TestIdP
from tests.saml.metadata_server import MetadataServer


@pytest.mark.parametrize(("url", "refusal"), [
    ("http://idp.example.com/metadata", "must use https"),
    ("ftp://idp.example.com/metadata", "must use https"),
    ("https:///metadata", "has no host"),
    ("https://user:secret@idp.example.com/metadata", "must not carry credentials"),
    ("https://idp.example.com:99999/metadata", "not a valid URL"),
    ("https://no-such-host.invalid/metadata", "does not resolve"),
    ("https://127.0.0.1/metadata", "not a public address"),
    ("https://localhost/metadata", "not a public address"),
    ("https://10.1.2.3/metadata", "not a public address"),
    ("https://172.16.0.1/metadata", "not a public address"),
    ("https://192.168.1.1/metadata", "not a public address"),
    ("https://169.254.169.254/latest/meta-data/", "never allowed"),  # cloud instance metadata
    ("https://100.64.0.1/metadata", "not a public address"),  # shared address space (carrier NAT)
    ("https://0.0.0.0/metadata", "never allowed"),
    ("https://224.0.0.1/metadata", "never allowed"),
    ("https://[::1]/metadata", "not a public address"),
    ("https://[fd00::1]/metadata", "not a public address"),
    ("https://[fe80::1]/metadata", "never allowed"),
    ("https://[::ffff:127.0.0.1]/metadata", "not a public address"),
    ("https://[::ffff:a9fe:a9fe]/metadata", "never allowed"),  # 169.254.169.254, IPv4-mapped
])
def test_a_url_that_could_reach_inside_is_refused_before_any_connection(url: str, refusal: str) -> None:
    with pytest.raises(InvalidValue, match=refusal) as refused:
        fetch_metadata(url)
    assert refused.value.context.get("field") == "idp_metadata_url"


def test_a_private_address_is_refused_even_when_an_idp_answers_there(
        metadata_server: MetadataServer, monkeypatch: pytest.MonkeyPatch, idp: TestIdP) -> None:
    metadata_server.body = idp.metadata()
    monkeypatch.delenv("SAML_METADATA_ALLOW_PRIVATE")
    with pytest.raises(InvalidValue, match="not a public address"):
        fetch_metadata(metadata_server.url)
    assert metadata_server.requests == 0  # refused before connecting
    monkeypatch.setenv("SAML_METADATA_ALLOW_PRIVATE", "1")  # the operator's choice, for an IdP inside
    assert fetch_metadata(metadata_server.url) == idp.metadata()


def _fails_generically(url: str, caplog: pytest.LogCaptureFixture, detail: str) -> None:
    """The caller reads only FAILED; the log says why (saml.metadata_fetch: no port scanning)."""
    caplog.clear()
    with pytest.raises(InvalidValue) as refused:
        fetch_metadata(url)
    assert refused.value.message == FAILED
    assert detail in caplog.text


def test_redirects_are_followed_a_few_times_and_each_is_checked(
        metadata_server: MetadataServer, monkeypatch: pytest.MonkeyPatch, idp: TestIdP,
        caplog: pytest.LogCaptureFixture) -> None:
    metadata_server.body = idp.metadata()
    hops = [f"/hop{n}" for n in range(MAX_REDIRECTS + 1)]
    for here, there in zip(hops, [*hops[1:], "/metadata"], strict=True):
        metadata_server.routes[here] = (302, {"Location": there}, b"")
    assert fetch_metadata(metadata_server.url_for(hops[1])) == idp.metadata()  # 3 redirects
    _fails_generically(metadata_server.url_for(hops[0]), caplog, "redirects more than 3 times")
    metadata_server.routes["/to-http"] = (301, {"Location": "http://idp.example.com/metadata"}, b"")
    _fails_generically(metadata_server.url_for("/to-http"), caplog, "must use https")
    # Private addresses are allowed here (the test IdP is on 127.0.0.1), link-local ones never.
    metadata_server.routes["/to-metadata-service"] = (302, {"Location": "https://169.254.169.254/"}, b"")
    _fails_generically(metadata_server.url_for("/to-metadata-service"), caplog, "never allowed")
    metadata_server.routes["/to-nowhere"] = (302, {"Location": "https://no-such-host.invalid/"}, b"")
    _fails_generically(metadata_server.url_for("/to-nowhere"), caplog, "does not resolve")


def test_errors_oversized_answers_and_untrusted_certificates_are_refused(
        metadata_server: MetadataServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    metadata_server.routes["/missing"] = (404, {}, b"not here")
    _fails_generically(metadata_server.url_for("/missing"), caplog, "answered HTTP 404")
    metadata_server.routes["/huge"] = (200, {}, b"<" * (LIMIT_BYTES + 1))
    _fails_generically(metadata_server.url_for("/huge"), caplog, "larger than 1024 KiB")
    monkeypatch.delenv("SSL_CERT_FILE")  # the server's certificate is no longer trusted
    _fails_generically(metadata_server.url, caplog, "SSLCertVerificationError")


def test_a_server_that_trickles_cannot_hold_the_fetch_past_its_deadline(
        metadata_server: MetadataServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(saml.metadata_fetch, "DEADLINE_SECONDS", 1)
    metadata_server.routes["/slow"] = (200, {}, b"<" * 100)  # 20 s at a byte every 0.2 s
    metadata_server.trickle.add("/slow")
    started = time.monotonic()
    _fails_generically(metadata_server.url_for("/slow"), caplog, "took longer than 1 s")
    assert time.monotonic() - started < 3


def test_a_server_that_stalls_in_its_headers_cannot_hold_the_fetch_past_its_deadline(
        metadata_server: MetadataServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(saml.metadata_fetch, "DEADLINE_SECONDS", 1)  # the socket timeout stays 10 s
    metadata_server.stall_headers.add("/stall")
    started = time.monotonic()
    _fails_generically(metadata_server.url_for("/stall"), caplog, "took longer than 1 s")
    assert time.monotonic() - started < 2.5


# ---- the admin API -----------------------------------------------------------------------------

@pytest.fixture
def keys_of(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    member = provision(db, system, acme.org.id, "mo@acme.test")
    with db.transaction() as session:
        made = {
            "owner": keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                         team_id=acme.default_team_id, name="o", scopes=["admin"]),
            "member": keys.create_api_key(session, system, acme.org.id, user_id=member.id,
                                          team_id=acme.default_team_id, name="m", scopes=["admin"]),
        }
    return {name: f"Bearer {issued.secret}" for name, issued in made.items()}


def _put(client: FlaskClient, key: str, body: Any) -> Any:
    return client.put("/api/v1/orgs/acme/sso", json=body, headers={"Authorization": key})


def _sso_state(db: Database, org_id: str) -> tuple[SamlConnection | None, int]:
    with db.reading() as session:
        events = len(session.scalars(select(AuditEvent).where(AuditEvent.action.like("sso.%"))).all())
        return session.get(SamlConnection, org_id), events


def test_the_api_configures_from_the_metadata_url_and_keeps_it_for_refreshes(
        client: FlaskClient, db: Database, acme: NewOrg, keys_of: dict[str, str], idp: TestIdP,
        metadata_server: MetadataServer) -> None:
    metadata_server.body = idp.metadata()
    answer = _put(client, keys_of["owner"], {"idp_metadata_url": metadata_server.url, "jit": False})
    assert answer.status_code == 200, answer.json
    assert answer.json["idp"]["metadata_url"] == metadata_server.url
    assert answer.json["idp"]["entity_id"] == idp.entity_id and answer.json["idp"]["jit"] is False
    connection, events = _sso_state(db, acme.org.id)
    assert connection is not None and connection.idp_metadata_url == metadata_server.url and events == 1


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({}, "idp_metadata_xml", "exactly one of"),
    ({"idp_metadata_xml": "<x/>", "idp_metadata_url": "https://idp.example.com/m"}, "idp_metadata_xml",
     "exactly one of"),
    ({"idp_metadata_url": ""}, "idp_metadata_url", "https URL"),
    ({"idp_metadata_url": 7}, "idp_metadata_url", "https URL"),
    ({"idp_metadata_url": "https://idp.example.com/" + "a" * 2048}, "idp_metadata_url", "at most 2048"),
    ({"idp_metadata_url": "http://idp.example.com/metadata"}, "idp_metadata_url", "must use https"),
    ({"idp_metadata_url": "https://169.254.169.254/latest/meta-data/"}, "idp_metadata_url", "never allowed"),
    ({"idp_metadata_url": "https://10.0.0.8/FederationMetadata/2007-06/FederationMetadata.xml"}, "idp_metadata_url",
     "not a public address"),
])
def test_bad_metadata_urls_are_400s_that_change_nothing(
        client: FlaskClient, db: Database, acme: NewOrg, keys_of: dict[str, str], body: dict[str, Any], field: str,
        fragment: str) -> None:
    answer = _put(client, keys_of["owner"], body)
    assert answer.status_code == 400, answer.json
    assert answer.json["field"] == field and fragment in answer.json["detail"], answer.json
    assert _sso_state(db, acme.org.id) == (None, 0)


def test_the_service_fetches_nothing_for_a_caller_who_may_not_configure_sso(
        client: FlaskClient, db: Database, acme: NewOrg, keys_of: dict[str, str], idp: TestIdP,
        metadata_server: MetadataServer) -> None:
    metadata_server.body = idp.metadata()
    answer = _put(client, keys_of["member"], {"idp_metadata_url": metadata_server.url})
    assert answer.status_code == 403, answer.json
    assert metadata_server.requests == 0
    assert _sso_state(db, acme.org.id) == (None, 0)


def test_a_document_given_later_replaces_the_url_so_a_refresh_cannot_undo_it(
        client: FlaskClient, db: Database, acme: NewOrg, keys_of: dict[str, str], idp: TestIdP,
        metadata_server: MetadataServer) -> None:
    metadata_server.body = idp.metadata()
    assert _put(client, keys_of["owner"], {"idp_metadata_url": metadata_server.url}).status_code == 200
    answer = _put(client, keys_of["owner"], {"idp_metadata_xml": idp.metadata().decode()})
    assert answer.status_code == 200, answer.json
    assert answer.json["idp"]["metadata_url"] is None
    with db.reading() as session:
        updated = session.scalars(select(AuditEvent).where(AuditEvent.action == "sso.updated")).one()
    assert updated.changes == {"idp_metadata_url": {"before": metadata_server.url, "after": None}}
