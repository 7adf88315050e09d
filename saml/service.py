"""SAML sign-in as services: (session, actor, plain args), never committing, each change audited.

The adapter (saml.views) verifies the message with saml.protocol, then frames one transaction
around `sign_in`. What must hold across processes lives in the database: a pending request is
consumed once, an assertion id is remembered until it expires, a session is a row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import String, Table, and_, bindparam, column, delete, insert, literal, null, select, union_all, update
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import sessions, users
from identity.actions import Action
from identity.errors import InvalidValue, NotFound
from identity.groups import apply_user_groups
from identity.lookups import user_target
from identity.models import Org, User
from identity.names import checked_text, name_key
from identity.roles import authorize
from identity.vocabulary import GrantSource, SessionMethod
from saml import once, sp_keys
from saml.connection import CLAIMS, IdpSettings, attribute_names, cert_fingerprint, generate_sp_credentials
from saml.models import SamlConnection, SamlIdentity, SamlPendingRequest
from saml.protocol import Assertion, Refused

TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def org_target(org: Org) -> Target:
    """Return the audit target naming `org`."""
    return Target("org", org.id, org.slug)


class ConnectionChanged(Exception):
    """The org's connection is not the one the response was verified with: verify it again.

    Raised before anything is written, so the caller may retry with the connection stored now.
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

    `metadata_url` is where the settings came from, None for a document: a document replaces a
    stored URL, so that the next refresh cannot bring back what the admin replaced. With
    `secret_key` (the service's SECRET_KEY), a key pair made now is sealed at once, in this
    transaction, so that it is never stored in plaintext (saml.sp_keys).
    """
    authorize_configuration(actor, org_id)
    org = session.get(Org, org_id)
    if org is None:
        raise NotFound(f"no org {org_id!r}", org_id=org_id)
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
    """
    stored = session.get(SamlConnection, org_id)
    if stored is None or stored.idp_metadata_url != url or not refresh_due(stored, reason):
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


@dataclass(frozen=True)
class Claims:
    """Who the assertion says signed in, in our terms."""

    user_name: str
    email: str | None
    given_name: str | None
    family_name: str | None
    display_name: str | None
    groups: list[str] | None  # None: the assertion carries no groups attribute, so memberships stay


def claims_of(connection: SamlConnection, assertion: Assertion) -> Claims:
    """Map the assertion's NameID and attributes to claims, with the org's attribute names."""
    def first(claim: str) -> str | None:
        for name in attribute_names(connection, claim):
            values = [v for v in assertion.attributes.get(name) or [] if isinstance(v, str) and v.strip()]
            if values:
                return values[0].strip()
        return None

    groups: list[str] | None = None
    for name in attribute_names(connection, "groups"):
        if name in assertion.attributes:
            groups = (groups or []) + [v.strip() for v in assertion.attributes[name] or []
                                       if isinstance(v, str) and v.strip()]
    email = first("email")
    checked_text(assertion.name_id, "NameID")
    if email is not None:
        checked_text(email, "email")
    opaque = assertion.name_id_format in (TRANSIENT, PERSISTENT)
    user_name = email if opaque and email else assertion.name_id.strip()
    if assertion.name_id_format == TRANSIENT and not email:
        raise Refused("no_stable_identifier", 403)
    if not user_name:
        raise Refused("no_name_id")
    if email is None and "@" in user_name:
        email = user_name
    return Claims(user_name, email, first("given_name"), first("family_name"), first("display_name"),
                  None if groups is None else sorted(set(groups)))


@dataclass(frozen=True)
class SignIn:
    """A successful sign-in: the user, whether JIT made it, and the session token for the cookie."""

    user: User
    created: bool
    token: str
    relay_state: str | None


def _find_user(session: Session, org_id: str, claims: Claims) -> User | None:
    """Return the member the assertion names, by the key of its userName only.

    Never by the email column: where an IdP lets people edit their own email attribute, matching
    on it would let one member sign in as another. A removed member is not re-created by JIT.
    """
    user, removed = users.find_by_user_name_or_removed(session, org_id, claims.user_name)
    if user is None and removed:
        raise Refused("user_removed", 403)
    return user


@dataclass(frozen=True)
class Identity:
    """A persistent NameID as the IdP sent it, and the key it is linked and compared by."""

    idp_entity_id: str
    name_id: str
    key: str


@dataclass(frozen=True)
class Found:
    """Who a persistent NameID signs in: `user` (None: nobody yet), and how its link must change."""

    user: User | None
    link: str | None = None  # "new": link it; "moved": its link named a removed member, point it here


def persistent_identity(connection: SamlConnection, assertion: Assertion) -> Identity | None:
    """Return the assertion's persistent identity at the connection's IdP, or None for other formats.

    The entity id is the connection's: the toolkit checked the assertion's Issuer against it.
    """
    if assertion.name_id_format != PERSISTENT:
        return None
    return Identity(connection.idp_entity_id, assertion.name_id, name_key(assertion.name_id))


# One round trip for every answer a persistent sign-in may need: the member its NameID is linked
# to (if any), the live member whose userName the claims name with the NameID that member is
# linked to at this IdP (if any), and whether a removed member had that userName. Each branch
# probes a unique or partial index.
_AT_IDP = (SamlIdentity.org_id == bindparam("org_id"), SamlIdentity.idp_entity_id == bindparam("idp_entity_id"))
_NAMED = (User.org_id == bindparam("org_id"), User.user_name_key == bindparam("user_name_key"))
LINKED_OR_NAMED = select(User, column("how", String), column("linked_key", String)).from_statement(union_all(
    select(User, literal("linked").label("how"), SamlIdentity.name_id_key.label("linked_key"))
    .join(SamlIdentity, SamlIdentity.user_id == User.id)
    .where(*_AT_IDP, SamlIdentity.name_id_key == bindparam("name_id_key")),
    select(User, literal("live").label("how"), SamlIdentity.name_id_key.label("linked_key"))
    .outerjoin(SamlIdentity, and_(SamlIdentity.user_id == User.id, *_AT_IDP))
    .where(*_NAMED, User.deleted_at.is_(None)),
    select(User, literal("removed").label("how"), null().label("linked_key"))
    .where(*_NAMED, User.deleted_at.is_not(None)),
))


def find_by_identity(session: Session, org_id: str, identity: Identity, claims: Claims) -> Found:
    """Return who a persistent NameID signs in (SAML core 2.0 section 8.3.7; DESIGN.md section 5).

    A linked NameID chooses its member, whatever email the assertion carries. An unlinked one
    is linked, once, to the live member whose userName the claims name (the email attribute
    when there is one), unless that member is linked to another NameID of this IdP: then it is
    refused, as the move of an IdP user who edited their own email to someone else's. A NameID
    linked to a removed member moves only to a live member of that same userName (the IdP
    provisioned the person again), never to whichever account its email now names.
    """
    rows = session.execute(LINKED_OR_NAMED, {
        "org_id": org_id, "idp_entity_id": identity.idp_entity_id, "name_id_key": identity.key,
        "user_name_key": name_key(claims.user_name)}).all()
    linked = next((user for user, how, _key in rows if how == "linked"), None)
    if linked is not None and linked.deleted_at is None:
        return Found(linked)
    named = next(((user, key) for user, how, key in rows if how == "live"), None)
    if named is not None and named[1] is not None:
        raise Refused("name_id_mismatch", 403, user_id=named[0].id)
    if linked is not None:  # removed
        if named is None or named[0].user_name_key != linked.user_name_key:
            raise Refused("user_removed", 403, user_id=linked.id)
        return Found(named[0], "moved")
    if named is not None:
        return Found(named[0], "new")
    if any(how == "removed" for _user, how, _key in rows):
        raise Refused("user_removed", 403)
    return Found(None, "new")


# Plain statements built once: a first sign-in links with one of them, nothing reads the row back.
INSERT_IDENTITY = insert(cast(Table, SamlIdentity.__table__))
MOVE_IDENTITY = update(cast(Table, SamlIdentity.__table__)).where(
    SamlIdentity.org_id == bindparam("at_org_id"), SamlIdentity.idp_entity_id == bindparam("at_idp_entity_id"),
    SamlIdentity.name_id_key == bindparam("at_name_id_key"),
).values(user_id=bindparam("to_user_id"), name_id=bindparam("to_name_id"), created_at=bindparam("now"))


def _link_identity(session: Session, actor: Actor, user: User, identity: Identity, how: str) -> None:
    """Link `identity` to `user` (`how`: "new", or "moved" from a removed member); audit it.

    The unique keys refuse a second NameID for the member, or a second member for the NameID,
    to a sign-in racing this one: it fails on IntegrityError, which the adapter answers as a
    concurrent sign-in.
    """
    now = clock.now()
    if how == "moved":
        session.execute(MOVE_IDENTITY, {"at_org_id": user.org_id, "at_idp_entity_id": identity.idp_entity_id,
                                        "at_name_id_key": identity.key, "to_user_id": user.id,
                                        "to_name_id": identity.name_id, "now": now})
    else:
        session.execute(INSERT_IDENTITY, {"org_id": user.org_id, "idp_entity_id": identity.idp_entity_id,
                                          "name_id_key": identity.key, "name_id": identity.name_id,
                                          "user_id": user.id, "created_at": now})
    record(session, actor, Action.SSO_IDENTITY_LINKED, user_target(user), {
        "idp_entity_id": identity.idp_entity_id, "name_id": identity.name_id, "moved_from_removed_user": how == "moved",
    }, org_id=user.org_id)


def sign_in(session: Session, actor: Actor, org_id: str, assertion: Assertion, *,
            connection: SamlConnection, lifetime: sessions.Lifetime) -> SignIn:
    """Sign in with an assertion verified with `connection` (read earlier, maybe cached): single-use
    checks, JIT provisioning, groups, session, audit.

    Long because it is the one place where the order matters: the connection is confirmed, then
    the request and the assertion are used up, so that nothing else runs for a replay.
    """
    if connection.org_id != org_id:
        raise ValueError("the connection is another org's")
    confirm_connection(session, connection)
    once.burn_assertion(session, org_id, assertion.assertion_id, assertion.expires_at)
    relay_state = None
    if assertion.in_response_to:
        relay_state = once.consume_request(session, org_id, assertion.in_response_to)
    elif not connection.allow_idp_initiated:
        raise Refused("idp_initiated_not_allowed", 403)
    claims = claims_of(connection, assertion)
    identity = persistent_identity(connection, assertion)
    found = Found(_find_user(session, org_id, claims)) if identity is None else \
        find_by_identity(session, org_id, identity, claims)
    user = found.user
    created = user is None
    if user is None:
        if not connection.jit:
            raise Refused("user_not_provisioned", 403)
        user = users.provision_user(
            session, replace(actor, display="SAML JIT provisioning"), org_id, user_name=claims.user_name,
            source=GrantSource.SAML, email=claims.email, given_name=claims.given_name, family_name=claims.family_name,
            display_name=claims.display_name)
    elif not user.active:
        raise Refused("user_deactivated", 403, user_id=user.id)
    if identity is not None and found.link is not None:
        _link_identity(session, actor, user, identity, found.link)
    user_actor = Actor("user", user.id, user.user_name, org_id=org_id, request_id=actor.request_id, ip=actor.ip,
                       user_agent=actor.user_agent)
    # Group changes are the IdP's doing (DESIGN 3.3), made with the SSO actor rather than the user's.
    groups_applied = claims.groups is not None
    if claims.groups is not None:
        apply_user_groups(session, actor, org_id, user.id, claims.groups)
    token = sessions.create_session(session, user, method=SessionMethod.SAML, lifetime=lifetime,
                                    name_id=assertion.name_id, name_id_format=assertion.name_id_format,
                                    session_index=assertion.session_index)
    record(session, user_actor, Action.SSO_LOGIN_SUCCEEDED, user_target(user), {
        "flow": "sp_initiated" if assertion.in_response_to else "idp_initiated", "jit_created": created,
        "groups": claims.groups, "groups_applied": groups_applied, "idp_entity_id": assertion.issuer,
    }, org_id=org_id)
    return SignIn(user, created, token, relay_state)


def record_failure(session: Session, actor: Actor, org: Org, reason: str, *,
                   assertion: Assertion | None = None, user_id: str | None = None,
                   extra: dict[str, Any] | None = None) -> None:
    """Audit a refused sign-in, and use up its assertion and request so that a retry is refused too.

    `extra`: more facts for the event (saml.refusals: how many like it were left out before it).
    """
    if assertion is not None and reason != "replayed":
        try:
            once.burn_assertion(session, org.id, assertion.assertion_id, assertion.expires_at, savepoint=True)
        except Refused:
            pass
        if assertion.in_response_to:
            session.execute(delete(SamlPendingRequest).where(SamlPendingRequest.id == assertion.in_response_to,
                                                             SamlPendingRequest.org_id == org.id))
    target = Target("user", user_id, user_id) if user_id else org_target(org)
    record(session, actor, Action.SSO_LOGIN_FAILED, target, {"reason": reason, **(extra or {})}, org_id=org.id,
           outcome="failure")
