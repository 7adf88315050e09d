"""An org's SAML connection as services: find and read it, configure it from the IdP's metadata
(owners; audited with its settings before and after), refresh it from the metadata URL, and tell a
sign-in whether the connection it was verified with is still the stored one. saml.service signs in.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, bindparam, select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import seats
from identity.actions import Action
from identity.errors import InvalidValue
from identity.models import Org
from identity.roles import authorize
from saml import sp_keys
from saml.connection import CLAIMS, IdpSettings, cert_fingerprint, generate_sp_credentials
from saml.identities import move_links
from saml.models import SamlConnection


def org_target(org: Org) -> Target:
    """Return the audit target naming `org`."""
    return Target("org", org.id, org.slug)


class ConnectionChanged(Exception):
    """The org's connection is not the one the response was verified with: verify it again.

    Nothing it is raised in is kept (its transaction is rolled back), so the caller may retry with
    the connection stored now.
    """


CONNECTION_VERSION = select(SamlConnection.version).where(SamlConnection.org_id == bindparam("org_id"))


def confirm_connection(session: Session, connection: SamlConnection) -> None:
    """Confirm that `connection`, read earlier, is still the stored version, or raise ConnectionChanged.

    The adapter verifies signatures with a connection it read before this transaction (and may
    have cached). Every change goes through `configure_connection`, which moves the version, so
    an unchanged version means the certificates checked and the settings read are the current
    ones; only the version is read.
    """
    stored = session.scalar(CONNECTION_VERSION, {"org_id": connection.org_id})
    if stored != connection.version:
        raise ConnectionChanged(connection.org_id)


def connection_unchanged(connection: SamlConnection) -> ColumnElement[bool]:
    """The condition "the org's connection is still `connection`'s version", its row read FOR SHARE: the
    sign-in's session starts under it (identity.sessions.create_session), its last statement before
    the audit, so that a change committed while the sign-in waited (a certificate retired, JIT turned
    off) is seen, and one that comes after waits for the sign-in. `confirm_connection` at the start
    cannot lock it: `configure_connection` takes the org's lock and then writes this row, and a
    sign-in takes the org's lock (JIT) after its start."""
    return (select(SamlConnection.org_id).where(SamlConnection.org_id == connection.org_id,
                                                 SamlConnection.version == connection.version)
            .with_for_update(read=True).exists())


def find_connection(session: Session, slug: str) -> tuple[Org, SamlConnection] | None:
    """Return the org with this slug and its SAML connection (one query), or None when either is missing."""
    row = session.execute(select(Org, SamlConnection).join(SamlConnection, SamlConnection.org_id == Org.id)
                          .where(Org.slug == slug)).one_or_none()
    return None if row is None else (row[0], row[1])


def read_connection(session: Session, actor: Actor, org_id: str) -> tuple[Org, SamlConnection | None]:
    """Return the org and its SAML connection (None until configured), for an actor who may read IdP trust."""
    authorize(actor, "trust.read", org_id=org_id)
    return session.get_one(Org, org_id), session.get(SamlConnection, org_id)


def authorize_configuration(actor: Actor, org_id: str) -> None:
    """Raise PermissionDenied unless `actor` may configure the org's SSO (checked before a metadata
    URL is fetched on the actor's say, and again by configure_connection). Owners only: whoever
    controls the IdP controls every identity (DESIGN 3.2)."""
    authorize(actor, "trust.manage", org_id=org_id)


def configure_connection(
    session: Session, actor: Actor, org_id: str, idp: IdpSettings, *, jit: bool | None = None,
    allow_idp_initiated: bool | None = None, sign_authn_requests: bool | None = None,
    want_assertions_encrypted: bool | None = None, want_assertions_signed: bool | None = None,
    attribute_map: dict[str, list[str]] | None = None, metadata_url: str | None = None, secret_key: str | None = None,
) -> SamlConnection:
    """Create or update the org's connection from IdP settings; our key pair is made on first use.

    A new IdP entity id takes the members' links with it (saml.identities.move_links), so that a
    linked member is still chosen by their NameID only, never by an email attribute again.
    `metadata_url` is where the settings came from, None for a document: a document replaces a
    stored URL, so that the next refresh cannot bring back what the admin replaced. With
    `secret_key` (the service's SECRET_KEY), a key pair made now is sealed at once, in this
    transaction, so that it is never stored in plaintext (saml.sp_keys).
    """
    authorize_configuration(actor, org_id)
    org = seats.lock_org(session, org_id)  # NotFound once deleted, and after a deletion under way
    unknown = set(attribute_map or {}) - set(CLAIMS)
    if unknown:
        raise InvalidValue(f"unknown claims {sorted(unknown)}; expected {', '.join(CLAIMS)}", field="attribute_map")
    now = clock.now()
    connection = session.get(SamlConnection, org_id)
    created = connection is None
    if connection is None:
        cert, key = generate_sp_credentials(f"identity SAML SP {org.slug}")
        connection = SamlConnection(org_id=org_id, sp_cert_pem=cert, sp_key_pem=key, jit=True,
                                    allow_idp_initiated=False, sign_authn_requests=False,
                                    want_assertions_encrypted=False, want_assertions_signed=False,
                                    attribute_map={}, created_at=now, version=0)
        session.add(connection)
    before = _settings_view(connection) if not created else {}
    connection.idp_entity_id, connection.idp_sso_url = idp.entity_id, idp.sso_url
    connection.idp_slo_url, connection.idp_signing_certs = idp.slo_url, list(idp.signing_certs)
    for name, value in (("jit", jit), ("allow_idp_initiated", allow_idp_initiated),
                        ("sign_authn_requests", sign_authn_requests),
                        ("want_assertions_encrypted", want_assertions_encrypted),
                        ("want_assertions_signed", want_assertions_signed),
                        ("attribute_map", attribute_map)):
        if value is not None:
            setattr(connection, name, value)
    connection.idp_metadata_url = metadata_url
    if metadata_url is not None:
        connection.metadata_refreshed_at = now
    connection.updated_at, connection.version = now, connection.version + 1
    after = _settings_view(connection)
    changes = {key: {"before": before.get(key), "after": value} for key, value in after.items()
               if before.get(key) != value}
    if created or changes:
        record(session, actor, Action.SSO_CONFIGURED if created else Action.SSO_UPDATED, org_target(org), changes,
               org_id=org_id)
    if not created and before["idp_entity_id"] != connection.idp_entity_id:
        move_links(session, actor, org, before["idp_entity_id"], connection.idp_entity_id)
    if secret_key is not None:
        sp_keys.seal_new_key(connection, secret_key)
    return connection


# A refused signature makes the service fetch the IdP's metadata again, at most this often per org:
# an IdP that rolled its certificate is followed within minutes without anybody running
# `identity saml refresh`, and a flood of forged responses cannot turn into a flood of fetches.
REFRESH_ON_REFUSAL_AFTER = dt.timedelta(minutes=5)
REFRESH_REASONS = frozenset({"invalid_signature", "idp_certificate_not_valid"})


def refresh_due(connection: SamlConnection, reason: str) -> bool:
    """Tell whether a sign-in refused for `reason` should fetch the connection's metadata URL again."""
    last = connection.metadata_refreshed_at
    return (bool(connection.idp_metadata_url) and reason in REFRESH_REASONS
            and (last is None or clock.now() - last >= REFRESH_ON_REFUSAL_AFTER))


def refresh_connection(session: Session, actor: Actor, org_id: str, idp: IdpSettings, *, url: str,
                       reason: str) -> bool:
    """Apply IdP metadata fetched again from `url` after a refusal; tell whether it was applied.

    Checked again against the stored connection: another process may have refreshed it meanwhile.
    A change of certificates is audited (`sso.updated`, with their fingerprints) as any other.
    Never a change of IdP: metadata naming another entity id than the stored one is not applied
    (anyone can set a refresh off with a forged response, and a new entity id moves the org's
    links, saml.identities.move_links); only an owner's configure_connection changes the IdP.
    """
    stored = session.get(SamlConnection, org_id)
    if stored is None or stored.idp_metadata_url != url or not refresh_due(stored, reason):
        return False
    if idp.entity_id != stored.idp_entity_id:
        return False
    configure_connection(session, actor, org_id, idp, metadata_url=url)
    return True


def _settings_view(connection: SamlConnection) -> dict[str, Any]:
    """The auditable settings: IdP certificates by SHA-256 fingerprint (a swap shows), never our key."""
    return {
        "idp_entity_id": connection.idp_entity_id, "idp_sso_url": connection.idp_sso_url,
        "idp_slo_url": connection.idp_slo_url,
        "idp_signing_cert_sha256": [cert_fingerprint(c) for c in connection.idp_signing_certs or []],
        "jit": connection.jit, "allow_idp_initiated": connection.allow_idp_initiated,
        "sign_authn_requests": connection.sign_authn_requests,
        "want_assertions_encrypted": connection.want_assertions_encrypted,
        "want_assertions_signed": connection.want_assertions_signed,
        "attribute_map": connection.attribute_map, "idp_metadata_url": connection.idp_metadata_url,
    }
