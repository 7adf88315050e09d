"""Team API keys and SCIM bearer tokens (DESIGN.md sections 3.7 and 4): made, verified, revoked.

Secrets are shown once by the caller that made them and kept only as hashes (identity.tokens).
Audit events name a credential by id and prefix, never by its secret.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import tokens
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, NotFound, PermissionDenied, Unauthenticated
from identity.grants import org_role, roles_for_key
from identity.models import ApiKey, Org, RoleGrant, ScimClient, ScimToken, Team, User
from identity.paging import Window, within
from identity.roles import allowed_scopes, authorize, refusal
from identity.vocabulary import KeyStatus, KeyStatusReason, Role

SCOPES = frozenset({"admin", "inference", "usage.read"})
# A team service key acts for its team at the `member` role, and never on the admin API.
SERVICE_KEY_ROLE = Role.MEMBER
SERVICE_KEY_SCOPES = frozenset({"inference", "usage.read"})
# Rotation: the old secret keeps working this long unless the caller says otherwise (README, "Keys").
DEFAULT_GRACE = dt.timedelta(hours=24)
MAX_GRACE = dt.timedelta(days=7)
# Writing last-used time on every request would make every read a write; a minute is precise enough.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Issued:
    """A credential just made: `secret` is shown once and never again."""

    id: str
    prefix: str
    secret: str


@dataclass(frozen=True)
class KeyIdentity:
    """Who a verified API key speaks for: what the gateway learns with one call."""

    key_id: str
    org_id: str
    org_slug: str
    team_id: str
    user_id: str
    user_name: str
    role: str
    team_role: str
    scopes: tuple[str, ...]

    def actor(self) -> Actor:
        """Return the audit actor for requests made with this key."""
        return Actor(type="api_key", id=self.key_id, display=self.user_name, org_id=self.org_id, role=self.role)


def _key_target(key: ApiKey) -> Target:
    return Target("api_key", key.id, key.prefix)


def create_api_key(session: Session, actor: Actor, org_id: str, *, user_id: str, team_id: str,
                   name: str, scopes: list[str]) -> Issued:
    """Make a team API key for a member of that team.

    A key for someone else is made only by one who outranks them (DESIGN 3.2), and no key carries
    a scope above its holder's role: otherwise an admin could mint an owner's key and act as owner.
    """
    bad = set(scopes) - SCOPES
    if bad:
        raise InvalidValue(f"unknown scopes: {', '.join(sorted(bad))}", field="scopes")
    own = actor.type in ("user", "api_key") and _actor_user_id(session, actor) == user_id
    action = "own_keys.manage" if own else "member.create_key"
    authorize(actor, action, org_id=org_id)
    user = session.get(User, user_id)
    team = session.get(Team, team_id)
    if user is None or user.org_id != org_id or user.deleted_at is not None:
        raise NotFound(f"no user {user_id!r} in this org", user_id=user_id)
    holder_role = org_role(session, user.id)
    authorize(actor, action, org_id=org_id, target_role=holder_role)
    above = set(scopes) - allowed_scopes(holder_role)
    if above:
        raise PermissionDenied(f"a {holder_role}'s key may not have the scopes {', '.join(sorted(above))}",
                               action="api_key.scopes", scopes=sorted(above))
    if team is None or team.org_id != org_id:
        raise NotFound(f"no team {team_id!r} in this org", team_id=team_id)
    if not user.active:
        raise PermissionDenied("a deactivated member cannot be given keys", user_id=user_id)
    in_team = select(RoleGrant.id).where(RoleGrant.user_id == user_id, RoleGrant.team_id == team_id).limit(1)
    if session.scalar(in_team) is None:
        raise InvalidValue(f"{user.user_name} is not a member of team {team_id}", field="team_id")
    name = (name or "").strip()[:200] or "API key"
    new = tokens.generate("key")
    key = ApiKey(id=str(uuid.uuid4()), org_id=org_id, team_id=team_id, user_id=user_id, name=name,
                 prefix=new.prefix, secret_hash=new.hash, scopes=sorted(set(scopes)), status=KeyStatus.ACTIVE,
                 created_at=clock.now(), **creator(actor))
    session.add(key)
    record(session, actor, Action.API_KEY_CREATED, _key_target(key),
           {"name": name, "team_id": team_id, "user_id": user_id, "scopes": key.scopes}, org_id=org_id)
    return Issued(key.id, key.prefix, new.plaintext)


def creator(actor: Actor) -> dict[str, str | None]:
    """Return the `created_by*` columns that name who made a credential."""
    return {"created_by_type": actor.type, "created_by_id": actor.id, "created_by": (actor.display or "")[:200]}


def _actor_user_id(session: Session, actor: Actor) -> str | None:
    if actor.type == "user":
        return actor.id
    key = session.get(ApiKey, actor.id)
    return key.user_id if key else None


def verify_api_key(session: Session, secret: str) -> KeyIdentity:
    """Return whom a presented API key speaks for, or raise Unauthenticated. Constant-time compare."""
    key = _find_key(session, secret)
    if key is None or key.status != KeyStatus.ACTIVE or key.team_id is None or key.user_id is None:
        raise Unauthenticated("invalid or revoked API key")
    if key.expires_at is not None and key.expires_at <= clock.now():
        raise Unauthenticated("this API key was rotated and its grace period has ended")
    user = session.get(User, key.user_id)
    org = session.get(Org, key.org_id)
    if user is None or org is None or not user.active or user.deleted_at is not None:
        raise Unauthenticated("invalid or revoked API key")
    role, team_role = roles_for_key(session, user.id, key.team_id, org.default_role)
    if team_role is None:
        raise Unauthenticated("the key's member has left its team")
    _note_use(key)
    # A holder demoted since the key was made keeps only the scopes their role now allows.
    scopes = tuple(scope for scope in key.scopes if scope in allowed_scopes(role))
    return KeyIdentity(key.id, org.id, org.slug, key.team_id, user.id, user.user_name, role, team_role, scopes)


def _find_key(session: Session, secret: str) -> ApiKey | None:
    prefix = tokens.split_prefix(secret or "")
    if prefix is None:
        return None
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    if row is None or not tokens.matches(secret, row.secret_hash):
        return None
    return row


def _use_due(last_used_at: dt.datetime | None) -> bool:
    """Whether a credential's last-used time is old enough to be saved again."""
    return last_used_at is None or clock.now() - last_used_at >= LAST_USED_RESOLUTION


def _note_use(row: ApiKey) -> None:
    if _use_due(row.last_used_at):
        row.last_used_at = clock.now()


def revoke_api_key(session: Session, actor: Actor, org_id: str, key_id: str) -> None:
    """Revoke a key for good: its owner may revoke it, and so may owners and admins."""
    key = session.get(ApiKey, key_id)
    if key is None or key.org_id != org_id:
        raise NotFound(f"no API key {key_id!r} in this org", key_id=key_id)
    _authorize_on_key(session, actor, org_id, key)
    if key.status == KeyStatus.REVOKED:
        return
    record(session, actor, Action.API_KEY_REVOKED, _key_target(key),
           {"status": {"before": key.status, "after": KeyStatus.REVOKED}, "reason": KeyStatusReason.MANUAL},
           org_id=org_id)
    key.status, key.status_reason = KeyStatus.REVOKED, KeyStatusReason.MANUAL


def _authorize_on_key(session: Session, actor: Actor, org_id: str, key: ApiKey) -> None:
    """Let the key's holder act on it, and those who may revoke it: admins and owners (who outrank
    the holder, for an owner's key), or those who manage service keys for a team's key."""
    if key.user_id is None:
        authorize(actor, "service_keys.manage", org_id=org_id)
    elif _actor_user_id(session, actor) == key.user_id:
        authorize(actor, "own_keys.manage", org_id=org_id)
    else:
        authorize(actor, "member.revoke_keys", org_id=org_id, target_role=org_role(session, key.user_id))


def _set_status(session: Session, user: User, where_status: KeyStatus, where_reason: KeyStatusReason | None,
                status: KeyStatus, reason: KeyStatusReason | None, team_id: str | None = None) -> list[str]:
    """Move the user's keys from one status to another in one statement; return their prefixes."""
    conditions = [ApiKey.user_id == user.id, ApiKey.status == where_status]
    if where_reason is not None:
        conditions.append(ApiKey.status_reason == where_reason)
    if team_id is not None:
        conditions.append(ApiKey.team_id == team_id)
    return _move(session, conditions, status, reason)


def _move(session: Session, conditions: list[ColumnElement[bool]], status: KeyStatus,
          reason: KeyStatusReason | None) -> list[str]:
    """Give the keys that meet `conditions` a status and its reason; return their prefixes."""
    prefixes = list(session.scalars(select(ApiKey.prefix).where(*conditions)))
    if prefixes:
        session.execute(update(ApiKey).where(*conditions).values(status=status, status_reason=reason),
                        execution_options={"synchronize_session": "fetch"})
    return prefixes


def block_user_keys(session: Session, user: User) -> list[str]:
    """Block the user's active keys because of deactivation; reactivation lifts exactly these."""
    return _set_status(session, user, KeyStatus.ACTIVE, None, KeyStatus.BLOCKED, KeyStatusReason.DEACTIVATION)


def unblock_user_keys(session: Session, user: User) -> list[str]:
    """Unblock the keys that deactivation blocked; keys revoked for any other reason stay revoked."""
    return _set_status(session, user, KeyStatus.BLOCKED, KeyStatusReason.DEACTIVATION, KeyStatus.ACTIVE, None)


def revoke_user_keys(session: Session, user: User, *, reason: KeyStatusReason) -> list[str]:
    """Revoke every key of the user that is not revoked yet."""
    return (_set_status(session, user, KeyStatus.ACTIVE, None, KeyStatus.REVOKED, reason)
            + _set_status(session, user, KeyStatus.BLOCKED, None, KeyStatus.REVOKED, reason))


def revoke_team_keys(session: Session, user: User, team_id: str) -> list[str]:
    """Revoke the user's keys for one team, because the user left it."""
    left = KeyStatusReason.LEFT_TEAM
    return (_set_status(session, user, KeyStatus.ACTIVE, None, KeyStatus.REVOKED, left, team_id)
            + _set_status(session, user, KeyStatus.BLOCKED, None, KeyStatus.REVOKED, left, team_id))


def revoke_keys_of_team(session: Session, org_id: str, team_id: str) -> list[str]:
    """Revoke every key of a team that is being deleted, whoever holds it."""
    return _move(session, [ApiKey.org_id == org_id, ApiKey.team_id == team_id, ApiKey.status != KeyStatus.REVOKED],
                 KeyStatus.REVOKED, KeyStatusReason.TEAM_DELETED)


def create_scim_token(session: Session, actor: Actor, org_id: str, *, name: str = "SCIM") -> Issued:
    """Make a long-lived SCIM bearer token for the org: whoever holds it controls every identity."""
    authorize(actor, "trust.manage", org_id=org_id)
    new = tokens.generate("scim")
    token = ScimToken(id=str(uuid.uuid4()), org_id=org_id, name=name, prefix=new.prefix, secret_hash=new.hash,
                      created_at=clock.now(), **creator(actor))
    session.add(token)
    record(session, actor, Action.SCIM_TOKEN_CREATED, Target("scim_token", token.id, token.prefix), {"name": name},
           org_id=org_id)
    return Issued(token.id, token.prefix, new.plaintext)


@dataclass(frozen=True)
class Presented:
    """A verified SCIM credential: who it acts as, and whether its last-used time needs saving."""

    actor: Actor
    use_due: bool = False


_token = ScimToken.__table__.c
_SCIM_TOKEN_BY_PREFIX = select(_token.id, _token.org_id, _token.name, _token.secret_hash, _token.revoked_at,
                               _token.last_used_at).where(_token.prefix == bindparam("prefix"))


def verify_scim_token(session: Session, secret: str) -> Presented:
    """Return who a presented SCIM token acts as, or raise Unauthenticated. Reads only.

    This runs before every SCIM request, so it is one indexed Core query on the token's prefix
    and a constant-time comparison of hashes, with no ORM object made. When the token's
    last-used time is due, the caller saves it with `note_scim_token_use` in a write transaction.
    """
    prefix = tokens.split_prefix(secret or "")
    row = None if prefix is None else session.connection().execute(_SCIM_TOKEN_BY_PREFIX, {"prefix": prefix}).first()
    if row is None or not tokens.matches(secret, row.secret_hash) or row.revoked_at is not None:
        raise Unauthenticated("invalid or revoked SCIM token")
    actor = Actor(type="scim_token", id=row.id, display=f"SCIM token {row.name} ({prefix})", org_id=row.org_id)
    return Presented(actor, _use_due(row.last_used_at))


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
        record(session, actor, Action.SCIM_TOKEN_REVOKED, Target("scim_token", token.id, token.prefix), {},
               org_id=org_id)


def create_scim_client(session: Session, actor: Actor, org_id: str, *, name: str = "SCIM client") -> Issued:
    """Make an OAuth 2.0 client-credentials client for SCIM; `Issued.prefix` is its client_id."""
    authorize(actor, "trust.manage", org_id=org_id)
    new = tokens.generate("scimcs")
    client = ScimClient(id=str(uuid.uuid4()), org_id=org_id, client_id=new.prefix, secret_hash=new.hash,
                        name=(name or "").strip()[:200] or "SCIM client", created_at=clock.now(), **creator(actor))
    session.add(client)
    record(session, actor, Action.SCIM_CLIENT_CREATED, Target("scim_client", client.id, client.client_id),
           {"name": client.name}, org_id=org_id)
    return Issued(client.id, client.client_id, new.plaintext)


def check_scim_client(session: Session, client_id: str, secret: str | None) -> ScimClient | None:
    """Return the live client when `secret` is its secret (or when no secret is to be checked)."""
    client = session.scalars(select(ScimClient).where(ScimClient.client_id == client_id)).one_or_none()
    if client is None or client.revoked_at is not None:
        return None
    if secret is not None and not tokens.matches(secret, client.secret_hash):
        return None
    return client


def scim_client_actor(client: ScimClient) -> Actor:
    """Return the actor for SCIM requests made with one of this client's access tokens."""
    return Actor(type="scim_client", id=client.id, display=f"SCIM client {client.name} ({client.client_id})",
                 org_id=client.org_id)


def record_scim_client_token(session: Session, client_id: str, *, expires_in: int,
                             request_id: str | None = None, ip: str | None = None,
                             client_request_id: str | None = None) -> None:
    """Audit that a client was issued an access token (never the token itself)."""
    client = check_scim_client(session, client_id, None)
    if client is None:
        return
    actor = scim_client_actor(client).with_request(request_id, ip, None, client_request_id=client_request_id)
    client.last_used_at = clock.now()
    record(session, actor, Action.SCIM_CLIENT_TOKEN_ISSUED, Target("scim_client", client.id, client.client_id),
           {"expires_in": expires_in}, org_id=client.org_id)


def revoke_scim_client(session: Session, actor: Actor, org_id: str, client_row_id: str) -> None:
    """Revoke a client: its access tokens stop working at once (they are checked against it)."""
    authorize(actor, "trust.revoke", org_id=org_id)
    client = _scim_client(session, org_id, client_row_id)
    if client.revoked_at is None:
        client.revoked_at = clock.now()
        record(session, actor, Action.SCIM_CLIENT_REVOKED, Target("scim_client", client.id, client.client_id), {},
               org_id=org_id)


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


def create_service_key(session: Session, actor: Actor, org_id: str, *, team_id: str, name: str,
                       scopes: list[str]) -> Issued:
    """Make a team service key: it belongs to the team, not to a person, so nobody's leaving stops it.

    It acts at the `member` role (never the admin API); deleting the team revokes it.
    """
    authorize(actor, "service_keys.manage", org_id=org_id)
    bad = set(scopes) - SCOPES
    if bad:
        raise InvalidValue(f"unknown scopes: {', '.join(sorted(bad))}", field="scopes")
    above = set(scopes) - SERVICE_KEY_SCOPES
    if above:
        raise PermissionDenied(f"a team service key may not have the scopes {', '.join(sorted(above))}",
                               action="api_key.scopes", scopes=sorted(above))
    team = session.get(Team, team_id)
    if team is None or team.org_id != org_id:
        raise NotFound(f"no team {team_id!r} in this org", team_id=team_id)
    name = (name or "").strip()[:200] or "service key"
    new = tokens.generate("key")
    key = ApiKey(id=str(uuid.uuid4()), org_id=org_id, team_id=team_id, user_id=None, name=name, prefix=new.prefix,
                 secret_hash=new.hash, scopes=sorted(set(scopes)), status=KeyStatus.ACTIVE, created_at=clock.now(),
                 **creator(actor))
    session.add(key)
    record(session, actor, Action.API_KEY_CREATED, _key_target(key),
           {"name": name, "team_id": team_id, "user_id": None, "kind": "service", "scopes": key.scopes},
           org_id=org_id)
    return Issued(key.id, key.prefix, new.plaintext)


def rotate_api_key(session: Session, actor: Actor, org_id: str, key_id: str, *,
                   grace_seconds: int | None = None) -> Issued:
    """Make the key's successor (same holder, team, name, scopes); the old secret keeps working for
    `grace_seconds` (DEFAULT_GRACE, at most MAX_GRACE), then answers `expired`.

    A key already rotated is refused: rotate its successor. The new key is audited as
    `api_key.created` (with `rotated_from`) and the old one as `api_key.rotated`.
    """
    old = session.get(ApiKey, key_id)
    if old is None or old.org_id != org_id:
        raise NotFound(f"no API key {key_id!r} in this org", key_id=key_id)
    _authorize_on_key(session, actor, org_id, old)
    grace = DEFAULT_GRACE if grace_seconds is None else dt.timedelta(seconds=min(max(grace_seconds, -1), 10**9))
    if not dt.timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidValue(f"grace_seconds must be between 0 and {int(MAX_GRACE.total_seconds())}",
                           field="grace_seconds")
    if old.status != KeyStatus.ACTIVE or old.team_id is None:
        raise Conflict(f"only an active key can be rotated; this one is {old.status}", key_id=key_id)
    if old.rotated_to is not None:
        raise Conflict("this key was rotated already: rotate its successor", key_id=key_id, rotated_to=old.rotated_to)
    new = tokens.generate("key")
    now = clock.now()
    key = ApiKey(id=str(uuid.uuid4()), org_id=org_id, team_id=old.team_id, user_id=old.user_id, name=old.name,
                 prefix=new.prefix, secret_hash=new.hash, scopes=list(old.scopes), status=KeyStatus.ACTIVE,
                 created_at=now, **creator(actor))
    session.add(key)
    old.expires_at, old.rotated_to = now + grace, key.id
    record(session, actor, Action.API_KEY_CREATED, _key_target(key),
           {"name": key.name, "team_id": key.team_id, "user_id": key.user_id, "scopes": key.scopes,
            "rotated_from": old.id}, org_id=org_id)
    record(session, actor, Action.API_KEY_ROTATED, _key_target(old),
           {"expires_at": old.expires_at.isoformat(), "rotated_to": key.id,
            "grace_seconds": int(grace.total_seconds())}, org_id=org_id)
    return Issued(key.id, key.prefix, new.plaintext)


@dataclass(frozen=True)
class KeyEntry:
    """One key as the list shows it: never its secret."""

    key: ApiKey
    team_name: str | None
    holder: str | None  # the holder's userName; None for a team service key

    @property
    def state(self) -> str:
        """`active`, `rotating` (old secret in its grace period), `expired`, `blocked` or `revoked`."""
        if self.key.status != KeyStatus.ACTIVE:
            return str(self.key.status)
        if self.key.expires_at is None:
            return "active"
        return "expired" if self.key.expires_at <= clock.now() else "rotating"


@dataclass(frozen=True)
class KeyPage:
    entries: list[KeyEntry]
    next: str | None


def list_api_keys(session: Session, actor: Actor, org_id: str, *, limit: int, after: str = "",
                  kind: str | None = None) -> KeyPage:
    """Return a keyset page of the org's keys by id: all of them for owners and admins, a member's own
    otherwise (team service keys only to those who may see every key). `kind`: `personal` or `service`."""
    authorize(actor, "own_keys.read", org_id=org_id)
    conditions: list[ColumnElement[bool]] = [ApiKey.org_id == org_id, ApiKey.id > after]
    if refusal(actor, "keys.read", org_id=org_id) is not None:
        conditions.append(ApiKey.user_id == (_actor_user_id(session, actor) or ""))
    if kind == "service":
        conditions.append(ApiKey.user_id.is_(None))
    elif kind == "personal":
        conditions.append(ApiKey.user_id.is_not(None))
    elif kind is not None:
        raise InvalidValue("kind must be personal or service", field="kind")
    rows = list(session.execute(
        select(ApiKey, Team.name, User.user_name).outerjoin(Team, Team.id == ApiKey.team_id)
        .outerjoin(User, User.id == ApiKey.user_id).where(*conditions).order_by(ApiKey.id).limit(limit)))
    entries = [KeyEntry(key, team_name, holder) for key, team_name, holder in rows]
    return KeyPage(entries, entries[-1].key.id if len(entries) == limit else None)
