"""IdP settings from a metadata URL, fetched over real HTTPS from a local server, and refreshed."""

from __future__ import annotations

import datetime as dt

from click.testing import CliRunner

from identity.orgs import NewOrg
from saml.cli import saml as saml_cli
from saml.connection import SpUrls
from tests.saml.conftest import BASE_URL, IDP_ENTITY_ID, Sso
from tests.saml.idp import KeyPair, TestIdP
from tests.saml.metadata_server import MetadataServer


def _configure_from(runner: CliRunner, server: MetadataServer, *flags: str) -> None:
    result = runner.invoke(saml_cli, ["configure", "--org", "acme", "--idp-metadata-url", server.url, *flags])
    assert result.exit_code == 0, result.output


def test_configure_from_url_and_refresh_picks_up_a_new_signing_certificate(
        runner: CliRunner, acme: NewOrg, idp: TestIdP, client, db, metadata_server: MetadataServer) -> None:
    metadata_server.body = idp.metadata()
    _configure_from(runner, metadata_server, "--allow-idp-initiated")
    sso = Sso(db, acme, idp, client, SpUrls.of(BASE_URL, "acme"))
    rolled = KeyPair.make("rolled over")
    assert sso.post(sso.response(name_id="ann@acme.test", signer=rolled)).status_code == 400
    # The IdP publishes its next certificate; the scheduled refresh (cron: `identity saml refresh`) sees it.
    metadata_server.body = TestIdP(IDP_ENTITY_ID, idp.keys, extra_certs=[rolled]).metadata()
    result = runner.invoke(saml_cli, ["refresh"])
    assert result.exit_code == 0, result.output
    assert sso.post(sso.response(name_id="ann@acme.test", signer=rolled)).status_code == 303


def test_metadata_url_must_be_https(runner: CliRunner, acme: NewOrg) -> None:
    result = runner.invoke(saml_cli, ["configure", "--org", "acme", "--idp-metadata-url", "http://idp.example/md"])
    assert result.exit_code == 1 and "https" in result.output


def _last_refreshed(db, org_id: str, moment: dt.datetime) -> None:
    from saml.models import SamlConnection

    with db.transaction() as session:
        session.get(SamlConnection, org_id).metadata_refreshed_at = moment


def test_a_rolled_over_certificate_is_fetched_by_the_first_response_signed_with_it(
        runner: CliRunner, acme: NewOrg, idp: TestIdP, client, db, metadata_server: MetadataServer) -> None:
    """No cron, no admin: a refused signature fetches the metadata URL again and the sign-in goes through."""
    from sqlalchemy import select

    from audit.models import AuditEvent

    metadata_server.body = idp.metadata()
    _configure_from(runner, metadata_server, "--allow-idp-initiated")
    _last_refreshed(db, acme.org.id, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    rolled = KeyPair.make("rolled over")
    metadata_server.body = TestIdP(IDP_ENTITY_ID, rolled).metadata()  # the old certificate is retired
    fetched = metadata_server.requests
    sso = Sso(db, acme, idp, client, SpUrls.of(BASE_URL, "acme"))
    assert sso.post(sso.response(name_id="ann@acme.test", signer=rolled)).status_code == 303
    assert metadata_server.requests == fetched + 1
    with db.reading() as session:
        updated = session.scalars(select(AuditEvent).where(AuditEvent.org_id == acme.org.id,
                                                           AuditEvent.action == "sso.updated")).all()[-1]
    assert updated.actor_display == "saml metadata refresh"
    assert "idp_signing_cert_sha256" in updated.changes
    # The retired key is refused now, and a refresh just happened: no fetch for it.
    assert sso.post(sso.response(name_id="bob@acme.test")).status_code == 400
    assert metadata_server.requests == fetched + 1


def test_forged_responses_cannot_make_the_service_fetch_metadata_more_than_every_few_minutes(
        runner: CliRunner, acme: NewOrg, idp: TestIdP, client, db, metadata_server: MetadataServer) -> None:
    metadata_server.body = idp.metadata()
    _configure_from(runner, metadata_server)
    fetched = metadata_server.requests
    sso = Sso(db, acme, idp, client, SpUrls.of(BASE_URL, "acme"))
    forger = KeyPair.make("forger")
    for _ in range(3):  # configured a moment ago: not due
        assert sso.post(sso.response(name_id="eve@acme.test", signer=forger)).status_code == 400
    assert metadata_server.requests == fetched
    _last_refreshed(db, acme.org.id, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    for _ in range(3):  # due once: one fetch, nothing new in it, the forgery stays refused
        assert sso.post(sso.response(name_id="eve@acme.test", signer=forger)).status_code == 400
    assert metadata_server.requests == fetched + 1
    with db.reading() as session:
        from sqlalchemy import func, select

        from identity.models import User
        assert session.scalar(select(func.count()).select_from(User).where(User.user_name == "eve@acme.test")) == 0
