"""`identity saml ...`: configure an org's SAML SSO from IdP metadata, refresh it, require SSO.

Registered on the `identity` command by identity/web/cli.py: `main.add_command(saml_cli.saml)` and
`main.add_command(saml_cli.login_link)` (DESIGN.md section 8: `identity login-link`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from sqlalchemy import select

from audit.actor import system_actor
from identity import config, migrate, orgs, users
from identity.db import Database
from identity.errors import DomainError, NotFound
from identity.models import Org
from saml import configuration, identities, links, sp_keys
from saml.connection import CLAIMS, SpUrls, parse_idp_metadata
from saml.metadata_fetch import fetch_metadata
from saml.models import SamlConnection


def _fail(error: DomainError) -> None:
    click.echo(f"error: {error.message}", err=True)
    sys.exit(1)


def _attribute_map(pairs: tuple[str, ...]) -> dict[str, list[str]] | None:
    """Parse `claim=Name` options (repeatable; several names for one claim are tried in order)."""
    if not pairs:
        return None
    found: dict[str, list[str]] = {}
    for pair in pairs:
        claim, sep, name = pair.partition("=")
        if not sep or claim.strip() not in CLAIMS or not name.strip():
            raise click.BadParameter(f"{pair!r}: expected CLAIM=AttributeName with CLAIM one of {', '.join(CLAIMS)}")
        found.setdefault(claim.strip(), []).append(name.strip())
    return found


def configure_org(database: Database, slug: str, metadata_xml: bytes, *, metadata_url: str | None = None,
                  jit: bool | None = None, allow_idp_initiated: bool | None = None,
                  sign_authn_requests: bool | None = None, want_assertions_encrypted: bool | None = None,
                  want_assertions_signed: bool | None = None, attribute_map: dict[str, list[str]] | None = None,
                  secret_key: str | None = None) -> dict[str, object]:
    """Configure `slug`'s SAML connection from IdP metadata; return what the IdP administrator needs.

    With `secret_key`, a new SP key is sealed under it at once (saml.sp_keys); without it, the
    service seals it at its first use.
    """
    idp = parse_idp_metadata(metadata_xml)
    actor = system_actor("cli saml configure")
    with database.transaction() as session:
        org = orgs.get_org_by_slug(session, slug)
        connection = configuration.configure_connection(
            session, actor, org.id, idp, jit=jit, allow_idp_initiated=allow_idp_initiated,
            sign_authn_requests=sign_authn_requests, want_assertions_encrypted=want_assertions_encrypted,
            want_assertions_signed=want_assertions_signed, attribute_map=attribute_map, metadata_url=metadata_url,
            secret_key=secret_key)
    urls = SpUrls.of(config.base_url(), slug)
    return {"org": slug, "idp_entity_id": idp.entity_id, "idp_signing_certs": len(idp.signing_certs),
            "jit": connection.jit, "allow_idp_initiated": connection.allow_idp_initiated,
            "sp_entity_id": urls.entity_id, "acs_url": urls.acs, "metadata_url": urls.entity_id,
            "login_url": urls.login, "slo_url": urls.slo}


@click.group()
def saml() -> None:
    """SAML 2.0 single sign-on."""


@saml.command("configure")
@click.option("--org", "slug", required=True)
@click.option("--idp-metadata", "metadata_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--idp-metadata-url", "metadata_url", default=None, help="fetch now and on `identity saml refresh`")
@click.option("--jit/--no-jit", default=None, help="create users at their first sign-in (default on)")
@click.option("--allow-idp-initiated/--no-allow-idp-initiated", default=None, help="accept unsolicited responses")
@click.option("--sign-requests/--no-sign-requests", "sign_requests", default=None)
@click.option("--encrypted-assertions/--no-encrypted-assertions", "encrypted", default=None)
@click.option("--signed-assertions/--no-signed-assertions", "signed", default=None,
              help="require the assertion itself signed, not only the response (the metadata's WantAssertionsSigned)")
@click.option("--attribute", "attributes", multiple=True, metavar="CLAIM=NAME",
              help=f"attribute name for a claim ({', '.join(CLAIMS)}); repeatable")
@click.option("--json", "as_json", is_flag=True)
def configure(slug: str, metadata_file: Path | None, metadata_url: str | None, jit: bool | None,
              allow_idp_initiated: bool | None, sign_requests: bool | None, encrypted: bool | None,
              signed: bool | None, attributes: tuple[str, ...], as_json: bool) -> None:
    """Configure an org's IdP from its metadata file or URL; print our SP's URLs for the IdP admin."""
    if bool(metadata_file) == bool(metadata_url):
        raise click.UsageError("give exactly one of --idp-metadata FILE and --idp-metadata-url URL")
    migrate.upgrade(config.database_url())
    try:
        xml = metadata_file.read_bytes() if metadata_file else fetch_metadata(str(metadata_url))
        result = configure_org(Database(config.database_url()), slug, xml, metadata_url=metadata_url, jit=jit,
                               allow_idp_initiated=allow_idp_initiated, sign_authn_requests=sign_requests,
                               want_assertions_encrypted=encrypted, want_assertions_signed=signed,
                               attribute_map=_attribute_map(attributes),
                               secret_key=config.secret_key())
    except DomainError as error:
        _fail(error)
        return
    except OSError as error:  # the file could not be read (a URL's failures are DomainErrors)
        click.echo(f"error: could not read the IdP metadata file: {type(error).__name__}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"org {slug}: SAML SSO configured with IdP {result['idp_entity_id']}")
    for key in ("sp_entity_id", "acs_url", "metadata_url", "login_url", "slo_url"):
        click.echo(f"{key}: {result[key]}")


@saml.command("refresh")
@click.option("--org", "slug", default=None, help="one org (default: every org with a metadata URL)")
def refresh(slug: str | None) -> None:
    """Fetch the IdP metadata again from each configured URL (run it from cron, e.g. hourly)."""
    database = Database(config.database_url())
    with database.reading() as session:
        found = [orgs.get_org_by_slug(session, slug)] if slug else list(session.scalars(select(Org)))
        rows = [(org.slug, connection.idp_metadata_url) for org in found
                if (connection := session.get(SamlConnection, org.id)) and connection.idp_metadata_url]
    failed = False
    for org_slug, url in rows:
        try:
            configure_org(database, org_slug, fetch_metadata(url), metadata_url=url, secret_key=config.secret_key())
            click.echo(f"org {org_slug}: IdP metadata refreshed")
        except DomainError as error:  # saml.metadata_fetch reports every failure as one
            failed = True
            click.echo(f"org {org_slug}: refresh failed: {getattr(error, 'message', type(error).__name__)}", err=True)
    if failed:
        sys.exit(1)


@saml.command("require-sso")
@click.option("--org", "slug", required=True)
@click.option("--on/--off", "required", required=True)
def require_sso(slug: str, required: bool) -> None:
    """Let members sign in only through the IdP (owners keep an audited break-glass sign-in)."""
    database = Database(config.database_url())
    try:
        with database.transaction() as session:
            orgs.set_require_sso(session, system_actor("cli saml require-sso"),
                                 orgs.get_org_by_slug(session, slug).id, required)
    except DomainError as error:
        _fail(error)
        return
    click.echo(f"org {slug}: require SSO {'on' if required else 'off'}")


@saml.command("unlink")
@click.option("--org", "slug", required=True)
@click.option("--user", "user_name", required=True, help="the member's userName (their email, as a rule)")
def unlink(slug: str, user_name: str) -> None:
    """Unlink a member from its IdP identities (persistent NameIDs), for a member refused
    `name_id_mismatch` after the IdP's identity of them changed; their next sign-in links anew."""
    database = Database(config.database_url())
    try:
        with database.transaction() as session:
            org_id = orgs.get_org_by_slug(session, slug).id
            user = users.find_by_user_name(session, org_id, user_name)
            if user is None:
                raise NotFound(f"no member {user_name!r} in org {slug}")
            found = identities.unlink_identities(session, system_actor("cli saml unlink"), org_id, user.id)
    except DomainError as error:
        _fail(error)
        return
    for link in found:
        click.echo(f"org {slug}: {user_name} unlinked from NameID {link.name_id!r} of {link.idp_entity_id}")


@saml.command("reseal-keys")
@click.option("--old-secret-env", "old_env", default="SECRET_KEY_PREVIOUS", show_default=True,
              help="environment variable holding the previous SECRET_KEY(s), separated by spaces")
def reseal_keys(old_env: str) -> None:
    """Seal every org's SP private key under the current SECRET_KEY (after rotating it, or to seal
    keys stored in plaintext before migration 0013c); keys already sealed under it are left alone."""
    secrets = (config.secret_key(), *sp_keys.previous_secrets(os.environ.get(old_env)))
    database = Database(config.database_url())
    count = 0
    try:
        with database.transaction() as session:
            for connection in session.scalars(select(SamlConnection).with_for_update()):
                sealed = sp_keys.reseal(secrets, connection.org_id, connection.sp_key_pem)
                if sealed is not None:
                    connection.sp_key_pem, count = sealed, count + 1
    except sp_keys.KeyUnavailable as error:
        click.echo(f"error: {error}; nothing was changed", err=True)
        sys.exit(1)
    click.echo(f"{count} SP private key(s) sealed under the current SECRET_KEY")


@click.command("login-link")
@click.option("--org", "slug", required=True)
@click.option("--email", required=True)
def login_link(slug: str, email: str) -> None:
    """Print a one-time sign-in link for the web console (15 minutes; owners only when SSO is required)."""
    database = Database(config.database_url())
    try:
        with database.transaction() as session:
            org_id = orgs.get_org_by_slug(session, slug).id
            token = links.issue_sign_in_link(session, system_actor("cli login-link"), org_id, email)
    except DomainError as error:
        _fail(error)
        return
    click.echo(f"{config.base_url()}/login/link/{token}")
