"""SAML sign-in as services: (session, actor, plain args), never committing, each change audited.

The adapter (saml.views) verifies the message with saml.protocol, then frames one transaction
around `sign_in`. What must hold across processes lives in the database: a pending request is
consumed once, an assertion id is remembered until it expires, a session is a row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, cast

from sqlalchemy import String, Table, and_, bindparam, column, delete, insert, literal, null, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import sessions, users
from identity.actions import Action
from identity.errors import Conflict, Unauthenticated
from identity.group_claims import apply_user_groups
from identity.lookups import user_target
from identity.model_base import fits
from identity.models import IdpGroup, Org, SsoSession, User
from identity.names import checked_text, name_key
from identity.vocabulary import GrantSource, SessionMethod
from saml import once
from saml.configuration import confirm_connection, connection_unchanged, org_target
from saml.connection import attribute_names
from saml.models import SamlConnection, SamlIdentity, SamlPendingRequest
from saml.protocol import Assertion, Refused

TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


@dataclass(frozen=True)
class Claims:
    """Who the assertion says signed in, in our terms."""

    user_name: str  # the userName claim when the assertion carries it, else the NameID's (or email's) name
    email: str | None
    given_name: str | None
    family_name: str | None
    display_name: str | None
    groups: list[str] | None  # None: the assertion carries no groups attribute, so memberships stay
    also_named: str | None = None  # the NameID's (or email's) name where the userName claim differs from it

    def name_keys(self) -> tuple[str, str]:
        """The userName keys that may name the member, the userName claim's first (one key twice if one)."""
        first = name_key(self.user_name)
        return first, name_key(self.also_named) if self.also_named else first


def claims_of(connection: SamlConnection, assertion: Assertion) -> Claims:
    """Map the assertion's NameID and attributes to claims, with the org's attribute names.

    The userName claim (by default Entra ID's `.../claims/name`, the UPN, which SCIM sends as
    userName) names the member as provisioned; the NameID (the email attribute, for an opaque one)
    names them where the assertion has no such claim, or where the claim names nobody.
    """
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
    email, named = first("email"), first("user_name")
    checked_text(assertion.name_id, "NameID")
    for value, what in ((email, "email"), (named, "userName")):
        if value is not None:
            checked_text(value, what)
    derived = _name_of(assertion, email)
    if not named and assertion.name_id_format == TRANSIENT and not email:
        raise Refused("no_stable_identifier", 403)
    user_name = named or derived
    if not user_name:
        raise Refused("no_name_id")
    if email is None and derived and "@" in derived:
        email = derived
    also = derived if named and derived and name_key(derived) != name_key(named) else None
    claims = Claims(user_name, email, first("given_name"), first("family_name"), first("display_name"),
                    None if groups is None else sorted(set(groups)), also)
    check_lengths(assertion, claims)
    return claims


def check_lengths(assertion: Assertion, claims: Claims) -> None:
    """Refuse `value_too_long` an assertion a value of which is longer than the column it is stored
    in (the models say how long): SAML puts no bound on a NameID, a SessionIndex or an attribute,
    and PostgreSQL would refuse the row where SQLite keeps it, so both answer this refusal.

    The assertion id is checked where it is stored first (saml.once.burn_assertion). One rule for
    identifiers and profile attributes alike: what the IdP signed is kept whole or not at all.
    """
    bounded = [(assertion.name_id, SsoSession.name_id), (name_key(assertion.name_id), SsoSession.name_id_key),
               (assertion.name_id_format, SsoSession.name_id_format),
               (assertion.session_index, SsoSession.session_index),
               (claims.user_name, User.user_name), (claims.also_named, User.user_name), (claims.email, User.email),
               (claims.given_name, User.given_name), (claims.family_name, User.family_name),
               (claims.display_name, User.display_name)]
    bounded += [(group, IdpGroup.external_id) for group in claims.groups or []]
    bounded += [(group, IdpGroup.display_name) for group in claims.groups or []]
    if not all(fits(value, column) for value, column in bounded):
        raise Refused("value_too_long")


def _name_of(assertion: Assertion, email: str | None) -> str | None:
    """The name the NameID gives: the NameID, or the email attribute for an opaque one (a transient
    NameID without an email attribute names nobody)."""
    if assertion.name_id_format in (TRANSIENT, PERSISTENT) and email:
        return email
    return None if assertion.name_id_format == TRANSIENT else assertion.name_id.strip()


@dataclass(frozen=True)
class SignIn:
    """A successful sign-in: the user, whether JIT made it, and the session token for the cookie."""

    user: User
    created: bool
    token: str
    relay_state: str | None


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


# One round trip for every answer a sign-in may need: the member its persistent NameID is linked to
# (if any), the live members whose userName the claims name (the userName claim's and the NameID's
# or email's) with the NameID each is linked to at this IdP (if any), and whether a removed member
# had one of those names. Each branch probes a unique or partial index.
_AT_IDP = (SamlIdentity.org_id == bindparam("org_id"), SamlIdentity.idp_entity_id == bindparam("idp_entity_id"))
_NAMED = (User.org_id == bindparam("org_id"),
          User.user_name_key.in_([bindparam("user_name_key"), bindparam("also_name_key")]))
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


@dataclass(frozen=True)
class Named:
    """The live member the claims name and the NameID key it is linked to at this IdP, or whether the
    name was a removed member's."""

    user: User | None = None
    linked_key: str | None = None
    removed: bool = False


def _lookup(session: Session, org_id: str, idp_entity_id: str, name_id_key: str | None,
            claims: Claims) -> tuple[User | None, Named]:
    """Run LINKED_OR_NAMED; return the member the NameID is linked to, and the member the claims name.

    The first of the claims' keys that names anybody decides (Claims.name_keys: the userName
    claim's first), so that a name the claim gives is never passed over for the NameID's or the
    email's, which an IdP user may be able to edit.
    """
    keys = claims.name_keys()
    rows = session.execute(LINKED_OR_NAMED, {
        "org_id": org_id, "idp_entity_id": idp_entity_id, "name_id_key": name_id_key,
        "user_name_key": keys[0], "also_name_key": keys[1]}).all()
    linked = next((user for user, how, _key in rows if how == "linked"), None)
    live_ids = {user.id for user, how, _key in rows if how == "live" and user.user_name_key in keys}
    if linked is None and len(live_ids) > 1:  # a linked NameID chooses, whatever the claims say
        # The userName claim and the NameID (or email) name two different live members: which one
        # the person is, the assertion does not say. Never the claim's (an IdP attribute its
        # holder may be able to edit would choose someone else's account), never silently.
        raise Refused("ambiguous_user", 403)
    for key in keys:
        live = next(((user, linked_key) for user, how, linked_key in rows
                     if how == "live" and user.user_name_key == key), None)
        if live is not None:
            return linked, Named(*live)
        if any(how == "removed" and user.user_name_key == key for user, how, _key in rows):
            return linked, Named(removed=True)
    return linked, Named()


def _unlinked_user(session: Session, org_id: str, connection: SamlConnection, claims: Claims) -> User | None:
    """The member a transient or emailAddress (any but persistent) NameID names, by the key of its
    userName only (the userName claim's, then the NameID's: never by the email column, for where an
    IdP lets people edit their own email, that would let one member sign in as another; a removed
    member is not re-created by JIT), unless that member is linked to a persistent NameID of this
    IdP: a linked member signs in by that NameID only (DESIGN.md section 5), never by an email
    attribute or address, which an IdP user may edit.
    The persistent sign-in's one statement, with no NameID to find."""
    named = _lookup(session, org_id, connection.idp_entity_id, None, claims)[1]
    if named.user is not None and named.linked_key is not None:
        raise Refused("name_id_mismatch", 403, user_id=named.user.id)
    if named.removed:
        raise Refused("user_removed", 403)
    return named.user


def find_by_identity(session: Session, org_id: str, identity: Identity, claims: Claims) -> Found:
    """Return who a persistent NameID signs in (SAML core 2.0 section 8.3.7; DESIGN.md section 5).

    A linked NameID chooses its member, whatever the assertion's other claims say. An unlinked
    one is linked, once, to the live member whose userName the claims name (the userName claim,
    else the email attribute when there is one), unless that member is linked to another NameID
    of this IdP: then it is refused, as the move of an IdP user who edited their own email to
    someone else's. A NameID linked to a removed member moves only to a live member of that same
    userName (the IdP provisioned the person again), never to whichever account its email now names.
    """
    linked, named = _lookup(session, org_id, identity.idp_entity_id, identity.key, claims)
    if linked is not None and linked.deleted_at is None:
        return Found(linked)
    if named.user is not None and named.linked_key is not None:
        raise Refused("name_id_mismatch", 403, user_id=named.user.id)
    if linked is not None:  # removed
        if named.user is None or named.user.user_name_key != linked.user_name_key:
            raise Refused("user_removed", 403, user_id=linked.id)
        return Found(named.user, "moved")
    if named.user is not None:
        return Found(named.user, "new")
    if named.removed:
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
    to a sign-in racing this one: Refused as a concurrent sign-in (the transaction is rolled back).
    """
    now = clock.now()
    try:
        if how == "moved":
            session.execute(MOVE_IDENTITY, {"at_org_id": user.org_id, "at_idp_entity_id": identity.idp_entity_id,
                                            "at_name_id_key": identity.key, "to_user_id": user.id,
                                            "to_name_id": identity.name_id, "now": now})
        else:
            session.execute(INSERT_IDENTITY, {"org_id": user.org_id, "idp_entity_id": identity.idp_entity_id,
                                              "name_id_key": identity.key, "name_id": identity.name_id,
                                              "user_id": user.id, "created_at": now})
    except IntegrityError:
        raise Refused("concurrent_sign_in", 409) from None
    record(session, actor, Action.SSO_IDENTITY_LINKED, user_target(user), {
        "idp_entity_id": identity.idp_entity_id, "name_id": identity.name_id, "moved_from_removed_user": how == "moved",
    }, org_id=user.org_id)


def sign_in(session: Session, actor: Actor, org_id: str, assertion: Assertion, *,
            connection: SamlConnection, lifetime: sessions.Lifetime) -> SignIn:
    """Sign in with an assertion verified with `connection` (read earlier, maybe cached): single-use
    checks, JIT provisioning, groups, session, audit.

    Long because it is the one place where the order matters: the connection is confirmed, then
    the request and the assertion are used up, so that nothing else runs for a replay; the
    connection's version and the member are read again, locked, by the statement that starts the
    session, so that neither a change of the connection nor the member's deactivation or deletion
    committed while the sign-in waited for a lock goes unseen (ConnectionChanged, user_deactivated).
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
    found = Found(_unlinked_user(session, org_id, connection, claims)) if identity is None else \
        find_by_identity(session, org_id, identity, claims)
    user = found.user
    created = user is None
    if user is None:
        if not connection.jit:
            raise Refused("user_not_provisioned", 403)
        try:
            user = users.provision_user(
                session, replace(actor, display="SAML JIT provisioning"), org_id, user_name=claims.user_name,
                source=GrantSource.SAML, email=claims.email, given_name=claims.given_name,
                family_name=claims.family_name, display_name=claims.display_name)
        except Conflict:  # nobody had the name when looked up: another sign-in (or the IdP) made them since
            raise Refused("concurrent_sign_in", 409) from None
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
    try:  # the member's row and the connection's read again, locked: a change under way is waited for
        token = sessions.create_session(session, user, method=SessionMethod.SAML, lifetime=lifetime,
                                        name_id=assertion.name_id, name_id_format=assertion.name_id_format,
                                        session_index=assertion.session_index,
                                        also=connection_unchanged(connection))
    except Unauthenticated:
        confirm_connection(session, connection)  # which of the two changed: the connection is verified again
        raise Refused("user_deactivated", 403, user_id=user.id) from None
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
