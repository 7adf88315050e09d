"""SCIM's credentials (DESIGN.md section 4): bearer tokens and OAuth 2.0 client-credentials
clients, made, verified, listed and revoked. Whoever holds one controls every identity of the
org, so making one is IdP trust (owner-only); admins list and revoke.

Secrets are shown once by the caller that made them and kept only as hashes (identity.tokens).
Audit events name a credential by id and prefix, never by its secret.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import made_once, seats, tokens
from identity.actions import Action
from identity.driver_reads import DriverRead
from identity.errors import NotFound, Unauthenticated
from identity.keys import LAST_USED_RESOLUTION, Issued, creator, use_due
from identity.models import ScimClient, ScimToken
from identity.paging import Window, within
from identity.roles import authorize
from identity.sessions import lifetime_ended


def create_scim_token(session: Session, actor: Actor, org_id: str, *, name: str = "SCIM",
                      made_as: str | None = None) -> Issued:
    """Make a long-lived SCIM bearer token for the org: whoever holds it controls every identity.
    NotFound once the org is deleted (its lock, taken here, says so, and waits for a deletion under way).
    `made_as`: a form's one-time nonce, the token's id (identity.made_once)."""
    authorize(actor, "trust.manage", org_id=org_id)
    seats.lock_org(session, org_id)
    token_id = made_once.new_id(session, ScimToken, org_id, made_as, "SCIM token")
    new = tokens.generate("scim")
    token = ScimToken(id=token_id, org_id=org_id, name=name, prefix=new.prefix, secret_hash=new.hash,
                      created_at=clock.now(), **creator(actor))
    session.add(token)
    record(session, actor, Action.SCIM_TOKEN_CREATED, Target("scim_token", token.id, token.prefix),
           {"name": name, tokens.FINGERPRINT: tokens.fingerprint(new.hash)}, org_id=org_id)
    return Issued(token.id, token.prefix, new.plaintext)


@dataclass(frozen=True)
class Presented:
    """A verified SCIM credential: who it acts as, and whether its last-used time needs saving."""

    actor: Actor
    use_due: bool = False


_token = ScimToken.__table__.c
# Read before every SCIM request: on the driver's cursor (identity.driver_reads).
_SCIM_TOKEN_BY_PREFIX = DriverRead(
    select(_token.id, _token.org_id, _token.name, _token.secret_hash, _token.revoked_at, _token.last_used_at)
    .where(_token.prefix == bindparam("prefix")))


def verify_scim_token(reader: Session | Connection, secret: str) -> Presented:
    """Return who a presented SCIM token acts as, or raise Unauthenticated. Reads only (a session's
    transaction, or a connection's: scim.lookup_front reads it outside any).

    This runs before every SCIM request, so it is one indexed Core query on the token's prefix
    and a constant-time comparison of hashes, with no ORM object made. When the token's
    last-used time is due, the caller saves it with `note_scim_token_use` in a write transaction.
    """
    prefix = tokens.split_prefix(secret or "")
    conn = reader if isinstance(reader, Connection) else reader.connection()
    found = [] if prefix is None else _SCIM_TOKEN_BY_PREFIX.rows(conn, prefix=prefix)
    row = found[0] if found else None
    if row is None:
        raise Unauthenticated("invalid or revoked SCIM token")
    if not tokens.matches(secret, row.secret_hash) or row.revoked_at is not None:
        # The client hears no more than above; the org's provisioning status (identity.provisioning_log) says which.
        why = "was revoked" if tokens.matches(secret, row.secret_hash) else "was presented with a wrong secret"
        raise Unauthenticated("invalid or revoked SCIM token", org_id=row.org_id,
                              reason=f"SCIM token {row.name} ({prefix}) {why}")
    actor = Actor(type="scim_token", id=row.id, display=f"SCIM token {row.name} ({prefix})", org_id=row.org_id)
    return Presented(actor, use_due(row.last_used_at))


# The credential's row read again FOR SHARE, last in a SCIM write's transaction (after the org's lock,
# groups, owner grants and user rows; before the audit chain's head at commit: identity.group_locks).
_REVOKED_AT = {
    "scim_token": select(ScimToken.revoked_at).where(ScimToken.id == bindparam("id")).with_for_update(read=True),
    "scim_client": select(ScimClient.revoked_at).where(ScimClient.id == bindparam("id")).with_for_update(read=True),
}


def confirm_credential(session: Session, actor: Actor) -> None:
    """Raise Unauthenticated unless the SCIM token or client `actor` acts with is still unrevoked now,
    and the access token it presented (`actor.expires_at`, its `exp`) has not expired meanwhile.

    `verify_scim_token` (or `check_scim_client`) read it before the write's transaction; a write that
    then waited for a lock (the org's, a group's) would otherwise commit with a credential revoked
    meanwhile: a member made by a leaked token after its revocation committed. Read with a lock, the
    revocation's committed row is seen, and a revocation that comes after waits for the write, so
    the audit chain never shows a change by a credential after its revocation. Revocation takes no
    other lock before the credential's row, so being last here deadlocks with nothing.
    """
    statement = _REVOKED_AT.get(actor.type)
    if statement is None:
        return
    if access_token_ended(actor.expires_at):
        raise Unauthenticated("invalid or expired access token", org_id=actor.org_id,
                              reason=f"{actor.display}'s access token expired while the request was under way")
    found = session.execute(statement, {"id": actor.id}).one_or_none()
    if found is None or found[0] is not None:
        raise Unauthenticated("invalid or revoked SCIM token", org_id=actor.org_id,
                              reason=f"{actor.display} was revoked while the request was under way")


def access_token_ended(expires_at: dt.datetime | None) -> bool:
    """Tell whether an access token whose `exp` is `expires_at` has expired now: the one rule of a
    lifetime's end, by the one clock (identity.sessions.lifetime_ended), for the request's start
    (scim.auth.authenticate) and a write's end (confirm_credential). RFC 7519 section 4.1.4: on or
    after `exp` the token MUST NOT be accepted. None: a credential with no end of its own."""
    return expires_at is not None and lifetime_ended(expires_at, clock.now())


def note_scim_token_use(session: Session, token_id: str) -> None:
    """Save that a SCIM token was used now: one UPDATE, at most once per LAST_USED_RESOLUTION.

    Bookkeeping for the admin ("is this token still in use?"), not a change of what anybody may
    do, so it is not an audit event.
    """
    now = clock.now()
    session.execute(update(ScimToken).where(
        ScimToken.id == token_id,
        (ScimToken.last_used_at.is_(None)) | (ScimToken.last_used_at <= now - LAST_USED_RESOLUTION),
    ).values(last_used_at=now))


def revoke_scim_token(session: Session, actor: Actor, org_id: str, token_id: str) -> None:
    """Revoke a SCIM token; requests with it fail from the next one on."""
    authorize(actor, "trust.revoke", org_id=org_id)
    token = session.get(ScimToken, token_id)
    if token is None or token.org_id != org_id:
        raise NotFound(f"no SCIM token {token_id!r} in this org", token_id=token_id)
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        record(session, actor, Action.SCIM_TOKEN_REVOKED, Target("scim_token", token.id, token.prefix),
               {"revoked_at": token.revoked_at.isoformat()}, org_id=org_id)


def create_scim_client(session: Session, actor: Actor, org_id: str, *, name: str = "SCIM client",
                       made_as: str | None = None) -> Issued:
    """Make an OAuth 2.0 client-credentials client for SCIM; `Issued.prefix` is its client_id.
    NotFound once the org is deleted, as for a token; `made_as` as for a token."""
    authorize(actor, "trust.manage", org_id=org_id)
    seats.lock_org(session, org_id)
    client_id = made_once.new_id(session, ScimClient, org_id, made_as, "OAuth client")
    new = tokens.generate("scimcs")
    client = ScimClient(id=client_id, org_id=org_id, client_id=new.prefix, secret_hash=new.hash,
                        name=(name or "").strip()[:200] or "SCIM client", created_at=clock.now(), **creator(actor))
    session.add(client)
    record(session, actor, Action.SCIM_CLIENT_CREATED, Target("scim_client", client.id, client.client_id),
           {"name": client.name, tokens.FINGERPRINT: tokens.fingerprint(new.hash)}, org_id=org_id)
    return Issued(client.id, client.client_id, new.plaintext)


def check_scim_client(session: Session, client_id: str, secret: str | None) -> ScimClient | None:
    """Return the live client when `secret` is its secret (or when no secret is to be checked).

    An unknown or revoked client's `secret` is still compared, with a hash no secret has: the
    refusal costs what a wrong secret's does, so its time does not tell which client ids exist."""
    client = session.scalars(select(ScimClient).where(ScimClient.client_id == client_id)).one_or_none()
    if client is not None and client.revoked_at is not None:
        client = None
    if secret is not None and not tokens.matches(secret, _NO_SECRET if client is None else client.secret_hash):
        return None
    return client


_NO_SECRET = tokens.digest("")  # generate() never makes an empty secret


def scim_client_actor(client: ScimClient) -> Actor:
    """Return the actor for SCIM requests made with one of this client's access tokens."""
    return Actor(type="scim_client", id=client.id, display=f"SCIM client {client.name} ({client.client_id})",
                 org_id=client.org_id)


def record_scim_client_token(session: Session, client_id: str, *, expires_in: int,
                             request_id: str | None = None, ip: str | None = None, user_agent: str | None = None,
                             client_request_id: str | None = None) -> None:
    """Audit that a client was issued an access token (never the token itself)."""
    client = check_scim_client(session, client_id, None)
    if client is None:
        return
    actor = scim_client_actor(client).with_request(request_id, ip, user_agent, client_request_id=client_request_id)
    client.last_used_at = clock.now()
    record(session, actor, Action.SCIM_CLIENT_TOKEN_ISSUED, Target("scim_client", client.id, client.client_id),
           {"expires_in": expires_in}, org_id=client.org_id)


def revoke_scim_client(session: Session, actor: Actor, org_id: str, client_row_id: str) -> None:
    """Revoke a client: its access tokens stop working at once (they are checked against it)."""
    authorize(actor, "trust.revoke", org_id=org_id)
    client = _scim_client(session, org_id, client_row_id)
    if client.revoked_at is None:
        client.revoked_at = clock.now()
        record(session, actor, Action.SCIM_CLIENT_REVOKED, Target("scim_client", client.id, client.client_id),
               {"revoked_at": client.revoked_at.isoformat()}, org_id=org_id)


def _scim_client(session: Session, org_id: str, ref: str) -> ScimClient:
    """Return the org's client by its id or its OAuth client_id (what `scim client create` printed)."""
    found = session.scalars(select(ScimClient).where(
        ScimClient.org_id == org_id, (ScimClient.id == ref) | (ScimClient.client_id == ref))).first()
    if found is None:
        raise NotFound(f"no SCIM client {ref!r} in this org")
    return found


def list_scim_clients(session: Session, actor: Actor, org_id: str, window: Window | None = None) -> list[ScimClient]:
    """Return the org's OAuth clients for SCIM, revoked ones included, oldest first (no secrets kept);
    those of `window`, and one more when there are more."""
    authorize(actor, "trust.read", org_id=org_id)
    return list(session.scalars(within(select(ScimClient).where(ScimClient.org_id == org_id),
                                       ScimClient.created_at, ScimClient.id, window)))


def list_scim_tokens(session: Session, actor: Actor, org_id: str, window: Window | None = None) -> list[ScimToken]:
    """Return the org's SCIM bearer tokens, revoked ones included, oldest first (no secrets kept);
    those of `window`, and one more when there are more."""
    authorize(actor, "trust.read", org_id=org_id)
    return list(session.scalars(within(select(ScimToken).where(ScimToken.org_id == org_id),
                                       ScimToken.created_at, ScimToken.id, window)))
