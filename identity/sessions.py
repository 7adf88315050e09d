"""Signed-in browser sessions, kept server-side so that sign-out and deactivation end them.

The browser holds a random token (in a signed cookie: identity.web.cookies); the database keeps
only the token's SHA-256, so neither a copied cookie after sign-out nor a leaked table signs
anyone in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, insert, select
from sqlalchemy.orm import Session

from audit import Actor, clock
from identity.errors import PermissionDenied, Unauthenticated
from identity.grants import org_role, taken_grants
from identity.key_revocation import ended_keys, grace_ended
from identity.models import ApiKey, Org, RoleGrant, SsoSession, Team, User
from identity.names import name_key
from identity.roles import RANK, capped, highest
from identity.transaction_sets import TransactionSet
from identity.vocabulary import KeyStatus, Role, SessionMethod

# Writing last-seen time on every request would make every /me a write; a minute is precise enough.
TOUCH_RESOLUTION = dt.timedelta(minutes=1)
PURGE_ONE_IN = 64


@dataclass(frozen=True)
class Lifetime:
    """How long a session lasts: without use (idle) and at most (absolute)."""

    idle: dt.timedelta = dt.timedelta(hours=1)
    absolute: dt.timedelta = dt.timedelta(hours=12)


@dataclass(frozen=True)
class SignedIn:
    """A live session and its user."""

    session: SsoSession
    user: User


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_session_of(row: SsoSession, token: str | None) -> bool:
    """Tell whether `row` is the session whose token is `token`."""
    return token is not None and row.id == _digest(token)


SESSIONS = cast(Table, SsoSession.__table__)
_USERS = cast(Table, User.__table__)
_COLUMNS = ("id", "method", "name_id", "name_id_key", "name_id_format", "session_index", "created_at",
            "last_seen_at", "expires_at")
# A plain INSERT, not an ORM object: nothing in the sign-in reads the row back. Its row comes from
# the member's, read FOR SHARE in the same statement, only while the member is active and not
# deleted: a deactivation or deletion under way holds that row (identity.lookups.LOCK_LIVE_USER,
# identity.member_removal), so the sign-in waits for it, then finds no live member and writes
# nothing, rather than add a session the change never saw when it ended the member's sessions
# (DESIGN.md 3.5); a change that comes after waits for the sign-in, and ends its session. Last in
# identity.group_locks' order but for the audit chain's head, as a profile change's row lock.
_FROM_LIVE_MEMBER = select(
    _USERS.c.org_id, _USERS.c.id, *(bindparam(name, type_=SESSIONS.c[name].type) for name in _COLUMNS),
).where(_USERS.c.id == bindparam("user_id"), _USERS.c.active.is_(True), _USERS.c.deleted_at.is_(None))
INSERT_SESSION = insert(SESSIONS).from_select(["org_id", "user_id", *_COLUMNS],
                                              _FROM_LIVE_MEMBER.with_for_update(read=True)).returning(SESSIONS.c.id)


def create_session(session: Session, user: User, *, method: str, lifetime: Lifetime, name_id: str | None = None,
                   name_id_format: str | None = None, session_index: str | None = None,
                   also: ColumnElement[bool] | None = None) -> str:
    """Start a session for `user`; return its token (shown to the browser only, in the cookie).

    Unauthenticated when, by the time the session would start, the member is deactivated or
    deleted (a change under way, holding the member's row, is waited for: INSERT_SESSION), or when
    `also`, a condition the caller's sign-in holds under (saml.configuration.connection_unchanged),
    read in the same statement, is false; nothing is written then.
    """
    token = secrets.token_urlsafe(32)
    now = clock.now()
    if secrets.randbelow(PURGE_ONE_IN) == 0:  # ended sessions are swept now and then, not on every sign-in
        purge_expired(session)
    statement = INSERT_SESSION if also is None else insert(SESSIONS).from_select(
        ["org_id", "user_id", *_COLUMNS], _FROM_LIVE_MEMBER.where(also).with_for_update(read=True),
    ).returning(SESSIONS.c.id)
    added = session.execute(statement, {
        "id": _digest(token), "user_id": user.id, "method": method, "name_id": name_id,
        "name_id_key": None if name_id is None else name_key(name_id), "name_id_format": name_id_format,
        "session_index": session_index, "created_at": now, "last_seen_at": now, "expires_at": now + lifetime.absolute})
    if added.first() is None:
        raise Unauthenticated("the member is deactivated or removed: no session starts", user_id=user.id,
                              org_id=user.org_id)
    return token


def resolve_session(session: Session, token: str | None, lifetime: Lifetime) -> SignedIn | None:
    """Return the live session of `token` and its user, touching it; None when it has ended.

    Ended means: unknown or signed out, past its absolute or idle lifetime, its user deactivated
    or deleted since (DESIGN.md 3.5: deactivation ends sessions), or begun with a sign-in link
    while the link no longer vouches for its user (`link_still_vouches`).
    """
    if not token:
        return None
    row = session.get(SsoSession, _digest(token))
    now = clock.now()
    if row is None or lifetime_ended(row.expires_at, now, row.last_seen_at + lifetime.idle):
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active or user.deleted_at is not None or user.org_id != row.org_id:
        return None
    if row.method != SessionMethod.SAML and not link_still_vouches(session, user):
        return None
    if now - row.last_seen_at >= TOUCH_RESOLUTION:
        row.last_seen_at = now
    return SignedIn(row, user)


def lifetime_ended(expires_at: dt.datetime, now: dt.datetime, idle_ends_at: dt.datetime | None = None) -> bool:
    """Tell whether a session's lifetime has ended at `now`: its absolute end (`expires_at`, set at
    sign-in) reached, or its idle end (`idle_ends_at`: its last use plus Lifetime.idle) when given.
    The one rule, by the one clock (audit.clock), for the request's start (resolve_session) and a
    write's end (confirm_role); purge_expired deletes by its absolute half, in SQL.

    confirm_role gives no idle end: the write it confirms is the session's use. verify_session, at
    the request's start, found the session unused for less than its idle lifetime and touched it
    (committed, to within TOUCH_RESOLUTION); the idle lifetime counts from that use, so only the
    absolute end can come while the write runs (and confirm_role does not know the configured idle)."""
    return expires_at <= now or (idle_ends_at is not None and idle_ends_at <= now)


def org_of_session(session: Session, token: str | None) -> str | None:
    """Return the org of `token`'s session, read only (not touched), or None when there is none."""
    if not token:
        return None
    return session.scalar(select(SsoSession.org_id).where(SsoSession.id == _digest(token)))


def link_still_vouches(session: Session, user: User) -> bool:
    """Tell whether a session begun with a sign-in link (a one-time link, or an owner's break-glass
    link) may go on: while the org lets members sign in without the IdP, or while its user is an
    owner. Asked on every request, so that however an owner stops being one (a manual demotion,
    the IdP taking them out of a group, a mapping or setting changed), their link sessions end with
    it while SSO is required; SAML sessions never read this."""
    org = session.get_one(Org, user.org_id)
    return not org.require_sso or org_role(session, user.id) == Role.OWNER


@dataclass(frozen=True)
class SessionIdentity:
    """Whom a live browser session speaks for at the admin API: the person, with their current org role."""

    user_id: str
    user_name: str
    org_id: str
    org_slug: str
    role: str
    team_id: str | None  # the member's default team: the org's Default when they are in it, else their oldest
    session_id: str | None = None  # the session's row (the token's digest): its writes end with it (confirm_role)

    def actor(self) -> Actor:
        """Return the audit actor of requests made in this session: the user themself, through this session."""
        return Actor(type="user", id=self.user_id, display=self.user_name, org_id=self.org_id, role=self.role,
                     session_id=self.session_id)


def verify_session(session: Session, token: str | None, lifetime: Lifetime) -> SessionIdentity:
    """Return whom the live session of `token` speaks for, or raise Unauthenticated.

    The role is read now, not at sign-in: a demotion takes effect on the next request, and a
    deactivation or sign-out ends the session (resolve_session).
    """
    found = resolve_session(session, token, lifetime)
    if found is None:
        raise Unauthenticated("the session has ended: sign in again")
    org = session.get_one(Org, found.user.org_id)
    role = org_role(session, found.user.id) or org.default_role
    return SessionIdentity(found.user.id, found.user.user_name, org.id, org.slug, role,
                           _default_team(session, found.user.id), found.session.id)


# A grant the caller's role was confirmed with: its id, role and group (source_ref; "" for none).
Held = tuple[tuple[int, str, str], ...]
# A member, whether live, when the session it acts through ends (NULL: it no longer exists), and its org
# grants, in one round trip (a row per grant; one with none when there is none).
_SESSION_ENDS = (select(SsoSession.expires_at).where(SsoSession.id == bindparam("session_id"))
                 .scalar_subquery().label("session_expires_at"))
_MEMBER_AND_GRANTS = (select(User.active, User.deleted_at, _SESSION_ENDS, RoleGrant.id, RoleGrant.role,
                             RoleGrant.source_ref)
                      .outerjoin(RoleGrant, and_(RoleGrant.user_id == User.id, RoleGrant.team_id.is_(None)))
                      .where(User.id == bindparam("user_id")))
# A key and its holder's org grants, in one round trip (a row per grant; one with none when there is none).
_KEY_AND_GRANTS = (select(ApiKey.status, ApiKey.expires_at, ApiKey.role_cap, ApiKey.user_id,
                          RoleGrant.id, RoleGrant.role, RoleGrant.source_ref)
                   .outerjoin(RoleGrant, and_(RoleGrant.user_id == ApiKey.user_id, RoleGrant.team_id.is_(None)))
                   .where(ApiKey.id == bindparam("key_id")))


def confirm_role(session: Session, actor: Actor, held: Held | None = None) -> Held:
    """Raise PermissionDenied when the member a session's or an API key's write acts for now has a lower
    org role than the one the write was authorised with (read by verify_session or verify_api_key at
    the request's start; a key's capped by its `role_cap`), and Unauthenticated when the key is no
    longer live (revoked, blocked by its holder's deactivation, past its rotation's grace), the
    session's member no longer is (deactivated or deleted: its sessions ended), or the session itself
    no longer exists (signed out, ended by the IdP's logout, by SSO becoming required: the actor's
    `session_id`) or its lifetime has ended meanwhile (lifetime_ended; the member's row and the
    session's read in the same statement as its grants); a
    higher role takes away nothing the write was allowed. Return the caller's org grants read.

    identity.service.run calls it twice. Once the write holds the org's lock (identity.seats.lock_org),
    before it changes anything: a role change, a deactivation, a deletion hold that lock until they
    commit, so a write that waited for one reads what it left, and one that comes after waits for the
    write. Then at the write's end, every lock it takes held and its writes flushed: a change that took
    no org lock and that the write waited for (the IdP taking a group, and the role or the team it gave,
    away from the caller; a key revoked by hand) has committed and is read. One it did not wait for may
    come after it. `held`, the grants read under the org's lock, tells what the write may have taken
    away itself (a transfer of ownership, a manual role change, a rule edit lower the caller's own role;
    a key may revoke or rotate itself, or its holder leave its team; a member may delete itself): a grant
    gone since counts only when this write took it itself (identity.grants.taken_grants, recorded by
    every statement that deletes org-wide grants), never one a change it waited for took, whether that
    change held the group the write then locked, or replaced a provisioned default (settle_defaults)
    without the org's lock. A key this write ended itself (identity.key_revocation.ended_keys, recorded
    by every change that revokes, blocks or rotates a key), a member whose sessions it ended itself
    (`ended_members`), or a session it ended itself (`ended_sessions`: an owner's break-glass session
    ending with her demotion) is no refusal. A user actor with no `session_id` (made by hand, in tests
    and tools) is not checked for its session.
    """
    if actor.type not in ("user", "api_key") or actor.role is None or actor.org_id is None:
        return ()
    cap = None
    if actor.type == "api_key":
        rows = session.execute(_KEY_AND_GRANTS, {"key_id": actor.id}).all()
        key = rows[0] if rows else None
        if key is None or not _live(key.status, key.expires_at) and actor.id not in ended_keys(session):
            raise Unauthenticated("this API key was revoked or blocked while the request was under way",
                                  org_id=actor.org_id)
        if key.user_id is None:  # a team's service key: no holder, no role of a person
            return ()
        cap = key.role_cap
        grants: Held = tuple((row.id, row.role, row.source_ref) for row in rows if row.id is not None)
    else:
        found = session.execute(_MEMBER_AND_GRANTS, {"user_id": actor.id, "session_id": actor.session_id}).all()
        member = found[0] if found else None
        if (member is None or not member.active or member.deleted_at is not None) \
                and actor.id not in ended_members(session):
            raise Unauthenticated("your membership was deactivated or removed while the request was under way: "
                                  "your session has ended", org_id=actor.org_id)
        if actor.session_id is not None and not _session_live(None if member is None else member.session_expires_at) \
                and actor.id not in ended_members(session) and actor.session_id not in ended_sessions(session):
            raise Unauthenticated("your session ended (signed out, or past its lifetime) while the request was "
                                  "under way: sign in again", org_id=actor.org_id)
        grants = tuple((row.id, row.role, row.source_ref) for row in found if row.id is not None)
    role = _role_now(session, actor.org_id, grants, held)
    role = capped(role, cap)
    if RANK[role] < RANK.get(actor.role, 0):  # a promotion meanwhile takes away nothing the write was allowed
        whose = "your role" if actor.type == "user" else "the role of this key's holder"
        raise PermissionDenied(f"{whose} in this org changed to {role} while this request was under way: "
                               "send it again", org_id=actor.org_id)
    return grants


def _session_live(ends: dt.datetime | None) -> bool:
    """Whether the session a write acts through still exists (`ends`, its absolute end read by
    _MEMBER_AND_GRANTS, not NULL) and its lifetime has not ended now: a session past its end while
    the write ran, not yet purged, is no more live than one signed out."""
    return ends is not None and not lifetime_ended(ends, clock.now())


def _role_now(session: Session, org_id: str, grants: Held, held: Held | None) -> Role:
    """The caller's org role from `grants`, and from those of `held` gone since that this write took
    itself (identity.grants.record_taken: confirm_role)."""
    present = set(grants)  # a grant whole, not by its id: SQLite may give a deleted grant's id to a new one
    mine = taken_grants(session)
    kept = [grant[1] for grant in held or () if grant not in present and grant[0] in mine]
    return highest(Role(role) for role in [*(grant[1] for grant in grants), *kept]) or \
        session.get_one(Org, org_id).default_role


def _live(status: str, expires_at: dt.datetime | None) -> bool:
    return status == KeyStatus.ACTIVE and not grace_ended(expires_at)


# The ids of the members whose sessions this session's transaction ended (a deactivation, a deletion):
# confirm_role lets a session's own write go on after it ended its caller's sessions itself, and no
# other. Recorded by `sessions_ended`; forgotten when the transaction ends.
_ENDED_MEMBERS: TransactionSet[str] = TransactionSet("identity.ended_members")
# The ids of the sessions this transaction ended one by one (a sign-out, the IdP's logout, the link
# sessions SSO ends, an owner's break-glass sessions): a session's own write that ends it goes on.
_ENDED_SESSIONS: TransactionSet[str] = TransactionSet("identity.ended_sessions")


def sessions_ended(session: Session, user_id: str) -> None:
    """Record that this transaction ends every session of the member (END_USER_SESSIONS, end_user_sessions)."""
    _ENDED_MEMBERS.add(session, (user_id,))


def ended_members(session: Session) -> frozenset[str]:
    """The ids of the members whose sessions this transaction ended (`sessions_ended`)."""
    return _ENDED_MEMBERS.of(session)


def ended_sessions(session: Session) -> frozenset[str]:
    """The ids of the sessions this transaction ended one by one (recorded where they end, below)."""
    return _ENDED_SESSIONS.of(session)


def _default_team(session: Session, user_id: str) -> str | None:
    return session.scalars(select(Team.id).join(RoleGrant, RoleGrant.team_id == Team.id)
                           .where(RoleGrant.user_id == user_id)
                           .order_by(Team.is_default.desc(), Team.created_at, Team.id).limit(1)).first()


@dataclass(frozen=True)
class Ended:
    """A session just ended, and its user, read with it in one statement: the sign-out's event names them."""

    row: SsoSession
    user: User


# A session with its user: users are never deleted (tombstones), so every session has one.
_WITH_USER = select(SsoSession, User).join(User, User.id == SsoSession.user_id)


def end_session(session: Session, token: str | None) -> Ended | None:
    """End the session of `token`; return what it was, with its user, or None when there was none."""
    if not token:
        return None
    found = session.execute(_WITH_USER.where(SsoSession.id == _digest(token))).one_or_none()
    if found is None:
        return None
    row, user = found
    session.delete(row)
    _ENDED_SESSIONS.add(session, (row.id,))
    return Ended(row, user)


def end_idp_sessions(session: Session, org_id: str, name_id: str, session_indexes: list[str]) -> list[Ended]:
    """End the sessions an IdP's LogoutRequest names (all of the subject's when no index is given).

    The NameID compares through its key, as sign-in compares it (identity.names): an IdP may name
    the subject in another case or Unicode form than its assertion did. SessionIndex is opaque
    (SAML core 2.0 section 3.7.1): it compares exactly.
    """
    stmt = _WITH_USER.where(SsoSession.org_id == org_id, SsoSession.name_id_key == name_key(name_id))
    if session_indexes:
        stmt = stmt.where(SsoSession.session_index.in_(session_indexes))
    ended = [Ended(row, user) for row, user in session.execute(stmt)]
    for each in ended:
        session.delete(each.row)
    _ENDED_SESSIONS.add(session, (each.row.id for each in ended))
    return ended


def purge_expired(session: Session) -> int:
    """Delete sessions past their absolute lifetime."""
    result = session.execute(delete(SsoSession).where(SsoSession.expires_at <= clock.now()))
    return int(getattr(result, "rowcount", 0) or 0)


def end_link_sessions_below_owner(session: Session, org_id: str) -> int:
    """End the org's sessions begun with a sign-in link by anyone but its owners (when SSO becomes
    required: their mailbox no longer vouches for them; an owner's link is the break-glass way in).
    Return how many ended."""
    owners = select(RoleGrant.user_id).where(RoleGrant.org_id == org_id, RoleGrant.team_id.is_(None),
                                             RoleGrant.role == Role.OWNER)
    ended = session.execute(delete(SsoSession).where(
        SsoSession.org_id == org_id, SsoSession.method == SessionMethod.LOGIN_LINK,
        SsoSession.user_id.not_in(owners)).returning(SsoSession.id)).scalars().all()
    _ENDED_SESSIONS.add(session, ended)
    return len(ended)


def end_break_glass_sessions(session: Session, user_id: str) -> None:
    """End the user's break-glass sessions (an owner's sign-in link while SSO is required): when they
    are no longer an owner, the role that let them in that way is gone."""
    _ENDED_SESSIONS.add(session, session.scalars(delete(SsoSession).where(
        SsoSession.user_id == user_id, SsoSession.method == SessionMethod.BREAK_GLASS).returning(SsoSession.id)))


# A member's sessions, ended by a plain statement (inside a member's removal: identity.member_removal).
END_USER_SESSIONS = delete(SESSIONS).where(SESSIONS.c.user_id == bindparam("member_id"))


def end_user_sessions(session: Session, user_id: str) -> None:
    """End every session of a user."""
    session.execute(delete(SsoSession).where(SsoSession.user_id == user_id))
    sessions_ended(session, user_id)
