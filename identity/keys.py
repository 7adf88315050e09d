"""Team API keys (DESIGN.md section 3.7): made, verified, rotated, revoked; SCIM's own
credentials are identity.scim_credentials'.

Secrets are shown once by the caller that made them and kept only as hashes (identity.tokens).
Audit events name a credential by id and prefix, never by its secret.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import key_revocation, made_once, seats, tokens, wallet_controls
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, NotFound, PermissionDenied, Unauthenticated
from identity.grants import org_role, roles_for_key
from identity.lookups import lock_team
from identity.models import ApiKey, Org, RoleGrant, User
from identity.roles import SCOPE_ROLES, allowed_scopes, authorize, capped, lowest, refusal
from identity.vocabulary import KeyStatus, KeyStatusReason, Role

SCOPES = frozenset(SCOPE_ROLES)  # identity.roles defines them
# A team service key acts for its team at the `member` role, and never on the admin API.
SERVICE_KEY_ROLE = Role.MEMBER
SERVICE_KEY_SCOPES = frozenset({"inference", "usage.read"})
# Rotation: the old secret keeps working this long unless the caller says otherwise (README, "Keys").
DEFAULT_GRACE = dt.timedelta(hours=24)
MAX_GRACE = dt.timedelta(days=7)
# Writing last-used time on every request would make every read a write; a minute is precise enough.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
# The actors that are a person: a key one of them makes for someone else carries a role cap.
PERSONS = ("user", "api_key")


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
    user_id: str | None  # None: a team service key, which belongs to its team (user_name is then its name)
    user_name: str
    role: str
    team_role: str
    scopes: tuple[str, ...]

    def actor(self) -> Actor:
        """Return the audit actor for requests made with this key: a team service key's is bound to its
        team (identity.roles.refusal holds it there)."""
        return Actor(type="api_key", id=self.key_id, display=self.user_name, org_id=self.org_id, role=self.role,
                     team_id=self.team_id if self.user_id is None else None)


def _key_target(key: ApiKey) -> Target:
    return Target("api_key", key.id, key.prefix)


def create_api_key(session: Session, actor: Actor, org_id: str, *, user_id: str, team_id: str,
                   name: str, scopes: list[str], made_as: str | None = None) -> Issued:
    """Make a team API key for a member of that team (`made_as`: a console form's one-time nonce, the
    key's id, identity.made_once).

    A key for someone else is made only by one who outranks them (DESIGN 3.2), and no key carries
    a scope above its holder's role: otherwise an admin could mint an owner's key and act as owner.
    Such a key is capped at the holder's role now (`role_cap`, see _role_cap), so that promoting
    the holder later does not lift the key whose secret its maker holds.
    """
    bad = set(scopes) - SCOPES
    if bad:
        raise InvalidValue(f"unknown scopes: {', '.join(sorted(bad))}", field="scopes")
    own = actor.type in PERSONS and actor_user_id(session, actor) == user_id
    action = "own_keys.manage" if own else "member.create_key"
    authorize(actor, action, org_id=org_id)
    # The org's lock first (identity.group_locks' order), then the holder read afresh: a deletion or
    # deactivation of the holder (or the org's deletion) under way, which holds that lock and revokes or
    # blocks the keys it sees, is waited for and read, never outlived by a key it did not see.
    seats.lock_org(session, org_id)
    user = session.get(User, user_id, populate_existing=True)
    if user is None or user.org_id != org_id or user.deleted_at is not None:
        raise NotFound(f"no user {user_id!r} in this org", user_id=user_id)
    holder_role = org_role(session, user.id)
    authorize(actor, action, org_id=org_id, target_role=holder_role)
    cap = _role_cap(session, actor, org_id, holder_role, own=own)
    acting = None if holder_role is None else capped(holder_role, cap)
    above = set(scopes) - allowed_scopes(acting)
    if above:
        raise PermissionDenied(f"a {acting}'s key may not have the scopes {', '.join(sorted(above))}",
                               action="api_key.scopes", scopes=sorted(above))
    team = lock_team(session, org_id, team_id)
    if not user.active:
        raise PermissionDenied("a deactivated member cannot be given keys", user_id=user_id)
    if not _lock_holder_grants(session, user_id, team.id):
        raise InvalidValue(f"{user.user_name} is not a member of team {team_id}", field="team_id")
    name = (name or "").strip()[:200] or "API key"
    new = tokens.generate("key")
    key = ApiKey(id=made_once.new_id(session, ApiKey, org_id, made_as, "key"), org_id=org_id, team_id=team_id,
                 user_id=user_id, name=name,
                 prefix=new.prefix, secret_hash=new.hash, scopes=sorted(set(scopes)), status=KeyStatus.ACTIVE,
                 created_at=clock.now(), role_cap=cap, **creator(actor))
    session.add(key)
    record(session, actor, Action.API_KEY_CREATED, _key_target(key),
           {"name": name, "team_id": team_id, "user_id": user_id, "scopes": key.scopes, "role_cap": cap,
            tokens.FINGERPRINT: tokens.fingerprint(new.hash)}, org_id=org_id)
    return Issued(key.id, key.prefix, new.plaintext)


# The holder's grants in the key's team, share-locked (FOR KEY SHARE) before a key for that team is
# written: a removal from the team deletes them, so it waits for the key (and then revokes it with the
# others) or the key's writer waits for it (and reads the holder gone from the team). After the team's
# lock in identity.group_locks' order, before the key's row.
HOLDER_GRANTS = (select(RoleGrant.id).where(RoleGrant.user_id == bindparam("user_id"),
                                            RoleGrant.team_id == bindparam("team_id"))
                 .order_by(RoleGrant.id).with_for_update(read=True, key_share=True))


def _lock_holder_grants(session: Session, user_id: str, team_id: str) -> bool:
    """Lock the holder's grants in the team (HOLDER_GRANTS); tell whether they hold any.

    None found may be a re-derivation that replaced them while this waited (PostgreSQL's READ
    COMMITTED answers only the rows the statement's snapshot saw): asked once more, from a new one.
    """
    params = {"user_id": user_id, "team_id": team_id}
    return bool(session.scalars(HOLDER_GRANTS, params).all() or session.scalars(HOLDER_GRANTS, params).all())


def _role_cap(session: Session, actor: Actor, org_id: str, holder_role: Role | None, *, own: bool,
              kept: Role | None = None) -> Role | None:
    """Return the role cap of a key that `actor` makes (or rotates) for a holder of `holder_role` now.

    Made by another person, who is shown its secret (and outranks the holder: the caller checked):
    the holder's role now (the org's default role when no grant gives one, as verify_api_key reads
    it). Made by the holder, or by the operator: `kept`, the rotated key's cap (none for a new key),
    so that a holder cannot lift a cap by rotating. Made through a capped key: never above that
    key's cap, or the key's holder could make an uncapped key for themselves with it.
    """
    bound = kept
    if not own and actor.type in PERSONS:
        bound = holder_role or session.get_one(Org, org_id).default_role
    through = session.get(ApiKey, actor.id) if actor.type == "api_key" else None
    return lowest((bound, through.role_cap if through is not None else None))


def creator(actor: Actor) -> dict[str, str | None]:
    """Return the `created_by*` columns that name who made a credential."""
    return {"created_by_type": actor.type, "created_by_id": actor.id, "created_by": (actor.display or "")[:200]}


def actor_user_id(session: Session, actor: Actor) -> str | None:
    """Return the member `actor` speaks for: a signed-in user, or an API key's holder, read through the
    session (the key that authenticated the request is already in it; lookups.acting_user_id asks the
    database)."""
    if actor.type == "user":
        return actor.id
    key = session.get(ApiKey, actor.id)
    return key.user_id if key else None


def verify_api_key(session: Session, secret: str) -> KeyIdentity:
    """Return whom a presented API key speaks for, or raise Unauthenticated. Constant-time compare."""
    key = _find_key(session, secret)
    if key is None or key.status != KeyStatus.ACTIVE or key.team_id is None:
        raise Unauthenticated("invalid or revoked API key")
    if key_revocation.grace_ended(key.expires_at):
        raise Unauthenticated("this API key was rotated and its grace period has ended")
    org = session.get(Org, key.org_id)
    if org is None or org.deleted_at is not None:
        raise Unauthenticated("invalid or revoked API key")
    if key.user_id is None:
        return _service_key_identity(key, org, key.team_id)
    user = session.get(User, key.user_id)
    if user is None or not user.active or user.deleted_at is not None:
        raise Unauthenticated("invalid or revoked API key")
    role, team_role = roles_for_key(session, user.id, key.team_id, org.default_role)
    if team_role is None:
        raise Unauthenticated("the key's member has left its team")
    _note_use(key)
    role = capped(role, key.role_cap)  # a key made for them by someone else: at most their role then
    # A holder demoted since the key was made keeps only the scopes their role now allows.
    scopes = tuple(scope for scope in key.scopes if scope in allowed_scopes(role))
    return KeyIdentity(key.id, org.id, org.slug, key.team_id, user.id, user.user_name, role, team_role, scopes)


def _service_key_identity(key: ApiKey, org: Org, team_id: str) -> KeyIdentity:
    """Whom a team service key speaks for: its team, at SERVICE_KEY_ROLE (as the key check answers it),
    with no member; its actor is bound to the team, so that `usage.read` reads that team's wallet only."""
    _note_use(key)
    scopes = tuple(scope for scope in key.scopes if scope in SERVICE_KEY_SCOPES)
    return KeyIdentity(key.id, org.id, org.slug, team_id, None, key.name, SERVICE_KEY_ROLE, SERVICE_KEY_ROLE,
                       scopes)


def _find_key(session: Session, secret: str) -> ApiKey | None:
    prefix = tokens.split_prefix(secret or "")
    if prefix is None:
        return None
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    if row is None or not tokens.matches(secret, row.secret_hash):
        return None
    return row


def use_due(last_used_at: dt.datetime | None) -> bool:
    """Whether a credential's last-used time is old enough to be saved again."""
    return last_used_at is None or clock.now() - last_used_at >= LAST_USED_RESOLUTION


def _note_use(row: ApiKey) -> None:
    if use_due(row.last_used_at):
        row.last_used_at = clock.now()


def revoke_api_key(session: Session, actor: Actor, org_id: str, key_id: str) -> None:
    """Revoke a key for good: its owner may revoke it, and so may owners and admins."""
    # Locked and read afresh: of two revocations at once (or one and a removal from the team, the
    # holder's deletion, the team's), the second finds the key revoked and records nothing.
    key = session.get(ApiKey, key_id, with_for_update=True, populate_existing=True)
    if key is None or key.org_id != org_id:
        raise NotFound(f"no API key {key_id!r} in this org", key_id=key_id)
    _authorize_on_key(session, actor, org_id, key)
    if key.status == KeyStatus.REVOKED:
        return
    record(session, actor, Action.API_KEY_REVOKED, _key_target(key),
           {"status": {"before": key.status, "after": KeyStatus.REVOKED}, "reason": KeyStatusReason.MANUAL},
           org_id=org_id)
    key.status, key.status_reason = KeyStatus.REVOKED, KeyStatusReason.MANUAL
    key_revocation.ended(session, [key.id])


def _key_refusal(session: Session, actor: Actor, org_id: str, key: ApiKey, *, rotate: bool,
                 holder_roles: Mapping[str, Role] | None = None) -> tuple[str, str] | None:
    """The action refused and why, when `actor` may not revoke (or `rotate`) `key`; None when it may.

    The key's holder acts on it (`own_keys.manage`); a team's service key is for those who manage
    them; someone else's is for those who may revoke a key of the holder's role, and rotating it
    (which hands the caller the new secret, a key that speaks as the holder) also for one who may
    make a key for them: who outranks them. The holder's org role is read here unless `holder_roles`
    (grants.org_roles of a page's holders: a holder missing from it has none) already holds it.
    """
    if key.user_id is None:
        checks: list[tuple[str, Role | None]] = [("service_keys.manage", None)]
    elif actor_user_id(session, actor) == key.user_id:
        checks = [("own_keys.manage", None)]
    else:
        holder_role = org_role(session, key.user_id) if holder_roles is None else holder_roles.get(key.user_id)
        checks = [("member.revoke_keys", holder_role)] + [("member.create_key", holder_role)] * rotate
    for action, target_role in checks:
        reason = refusal(actor, action, org_id=org_id, target_role=target_role)
        if reason is not None:
            return action, reason
    return None


def may_act_on_key(session: Session, actor: Actor, org_id: str, key: ApiKey, *, rotate: bool = False,
                   holder_roles: Mapping[str, Role] | None = None) -> bool:
    """Tell whether `actor` may revoke (or `rotate`) `key`: the services' own rule, for the console's
    buttons; `holder_roles` are the org roles of a page's key holders, read once for the page."""
    return _key_refusal(session, actor, org_id, key, rotate=rotate, holder_roles=holder_roles) is None


def _authorize_on_key(session: Session, actor: Actor, org_id: str, key: ApiKey, *, rotate: bool = False) -> None:
    found = _key_refusal(session, actor, org_id, key, rotate=rotate)
    if found is not None:
        raise PermissionDenied(f"{actor.type} {actor.display!r} may not {found[0]}: {found[1]}", action=found[0])


def create_service_key(session: Session, actor: Actor, org_id: str, *, team_id: str, name: str,
                       scopes: list[str], made_as: str | None = None) -> Issued:
    """Make a team service key: it belongs to the team, not to a person, so nobody's leaving stops it
    (`made_as` as for create_api_key).

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
    # The org's lock first: the org's deletion under way, which revokes every key it sees, is waited
    # for and read (NotFound), never outlived by a key it did not see.
    seats.lock_org(session, org_id)
    lock_team(session, org_id, team_id)
    name = (name or "").strip()[:200] or "service key"
    new = tokens.generate("key")
    key = ApiKey(id=made_once.new_id(session, ApiKey, org_id, made_as, "service key"), org_id=org_id, team_id=team_id,
                 user_id=None, name=name, prefix=new.prefix,
                 secret_hash=new.hash, scopes=sorted(set(scopes)), status=KeyStatus.ACTIVE, created_at=clock.now(),
                 **creator(actor))
    session.add(key)
    record(session, actor, Action.API_KEY_CREATED, _key_target(key),
           {"name": name, "team_id": team_id, "user_id": None, "kind": "service", "scopes": key.scopes,
            tokens.FINGERPRINT: tokens.fingerprint(new.hash)}, org_id=org_id)
    return Issued(key.id, key.prefix, new.plaintext)


def rotate_api_key(session: Session, actor: Actor, org_id: str, key_id: str, *,
                   grace_seconds: int | None = None) -> Issued:
    """Make the key's successor (same holder, team, name, scopes); the old secret keeps working for
    `grace_seconds` (DEFAULT_GRACE, at most MAX_GRACE), then answers `expired`.

    A key already rotated is refused: rotate its successor. The key's spending limit goes to the
    successor with its spend and refusal (identity.wallet_controls.pass_key_limit). The new key is
    audited as `api_key.created` (with `rotated_from` and its `role_cap`) and the old one as
    `api_key.rotated` (with the `spend_limit` that went with it, if any). Rotated by someone else,
    who is handed the new secret, the successor is capped at the holder's role now; by its holder,
    it keeps the old key's cap (_role_cap).
    """
    found = session.get(ApiKey, key_id)
    if found is None or found.org_id != org_id:
        raise NotFound(f"no API key {key_id!r} in this org", key_id=key_id)
    in_team = _lock_for_successor(session, org_id, found)
    # Locked and read afresh: of two rotations at once, the second sees the first's successor
    # (409), never two successors of one key.
    old = session.get_one(ApiKey, key_id, with_for_update=True, populate_existing=True)
    _authorize_on_key(session, actor, org_id, old, rotate=True)
    grace = DEFAULT_GRACE if grace_seconds is None else dt.timedelta(seconds=min(max(grace_seconds, -1), 10**9))
    if not dt.timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidValue(f"grace_seconds must be between 0 and {int(MAX_GRACE.total_seconds())}",
                           field="grace_seconds")
    if old.status != KeyStatus.ACTIVE or old.team_id is None:
        raise Conflict(f"only an active key can be rotated; this one is {old.status}", key_id=key_id)
    if old.rotated_to is not None:
        raise Conflict("this key was rotated already: rotate its successor", key_id=key_id, rotated_to=old.rotated_to)
    if old.user_id is not None and not in_team:
        raise Conflict("this key's holder has left its team: it cannot be rotated", key_id=key_id)
    new = tokens.generate("key")
    now = clock.now()
    cap = None if old.user_id is None else _role_cap(  # a service key acts at SERVICE_KEY_ROLE, uncapped
        session, actor, org_id, org_role(session, old.user_id), own=actor_user_id(session, actor) == old.user_id,
        kept=old.role_cap)
    key = ApiKey(id=str(uuid.uuid4()), org_id=org_id, team_id=old.team_id, user_id=old.user_id, name=old.name,
                 prefix=new.prefix, secret_hash=new.hash, scopes=list(old.scopes), status=KeyStatus.ACTIVE,
                 created_at=now, role_cap=cap, **creator(actor))
    session.add(key)
    old.expires_at, old.rotated_to = now + grace, key.id
    key_revocation.ended(session, [old.id])  # at the end of its grace: its own write may rotate it with none
    limit = wallet_controls.pass_key_limit(session, org_id, old.team_id, old.id, key.id)
    record(session, actor, Action.API_KEY_CREATED, _key_target(key),
           {"name": key.name, "team_id": key.team_id, "user_id": key.user_id, "scopes": key.scopes,
            "rotated_from": old.id, "role_cap": cap, tokens.FINGERPRINT: tokens.fingerprint(new.hash)}, org_id=org_id)
    record(session, actor, Action.API_KEY_ROTATED, _key_target(old),
           {"expires_at": old.expires_at.isoformat(), "rotated_to": key.id,
            "grace_seconds": int(grace.total_seconds()), **({"spend_limit": limit} if limit else {})}, org_id=org_id)
    return Issued(key.id, key.prefix, new.plaintext)


def _lock_for_successor(session: Session, org_id: str, key: ApiKey) -> bool:
    """Take what writing `key`'s successor needs, in identity.group_locks' order, before the key's row:
    the org's lock (the org's deletion under way, or the holder's, which revokes the keys it sees, is
    waited for: NotFound once the org is gone, the key read revoked once its holder is), the team's,
    and the holder's grants in the team (a removal from it waits for the successor, and revokes it
    too, or is waited for, and the key read revoked). Tell whether the key's holder is in its team."""
    seats.lock_org(session, org_id)
    in_team = False
    if key.team_id is not None:
        try:
            team = lock_team(session, org_id, key.team_id)
        except NotFound:  # deleted meanwhile: the key, read again, is revoked
            team = None
        if team is not None and key.user_id is not None:
            in_team = _lock_holder_grants(session, key.user_id, team.id)
    return in_team
