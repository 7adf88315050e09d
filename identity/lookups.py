"""Finding an org's members and teams by id or name: the reads every service starts from.

Below every service module (it imports none of them), so that teams, keys, invitations, owners
and users can all ask "which member is this?" without importing each other.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, bindparam, select, union_all
from sqlalchemy.orm import Session

from audit import Actor
from audit.log import Target
from identity.errors import Conflict, NotFound
from identity.models import ApiKey, IdpGroup, Team, User, UserEmail
from identity.names import name_key


def user_target(user: User) -> Target:
    """Return the audit target naming `user`."""
    return Target("user", user.id, user.user_name)


def group_target(group: IdpGroup) -> Target:
    """Return the audit target naming an IdP group."""
    return Target("group", group.id, group.display_name)


def get_user(session: Session, org_id: str, user_id: str) -> User:
    """Return a user of the org that is not deleted, or raise NotFound."""
    user = session.get(User, user_id)
    if user is None or user.org_id != org_id or user.deleted_at is not None:
        raise NotFound(f"no user {user_id!r} in this org", user_id=user_id)
    return user


# The member's row locked (FOR NO KEY UPDATE) and read again, the session's copy refreshed: a change
# about to write the row reads it as it is now, not as read before another change or its deletion
# committed. Last in identity.group_locks' order: after the org's lock and the member's groups.
LOCK_LIVE_USER = (select(User).where(User.id == bindparam("user_id")).with_for_update(key_share=True)
                  .execution_options(populate_existing=True))


def lock_live_user(session: Session, user_id: str) -> User:
    """Lock the member's row and read it again (LOCK_LIVE_USER); NotFound once deleted."""
    user = session.execute(LOCK_LIVE_USER, {"user_id": user_id}).scalar_one()
    if user.deleted_at is not None:
        raise NotFound(f"no user {user_id!r} in this org", user_id=user_id)
    return user


def find_by_user_name(session: Session, org_id: str, user_name: str) -> User | None:
    """Return the live user with this userName, compared by its key (identity.names.name_key)."""
    return session.scalars(select(User).where(
        User.org_id == org_id, User.user_name_key == name_key(user_name), User.deleted_at.is_(None),
    )).one_or_none()


def has_address(address: str, org_id: str | None = None) -> ColumnElement[bool]:
    """The condition "`address` is the user's userName or one of its email addresses", compared
    through the one key (identity.names.name_key, DESIGN.md 5): `user_emails` holds each address a
    user shows as that key. Not SQL's lower(), which folds ASCII only (SQLite) and not `ß` to `ss`.

    The users it names are found first, each half through its own index (with `org_id`: the live
    userName's unique index, and the emails' by value), so no org's users are read one by one.
    """
    key = name_key(address.strip())
    by_name = select(User.id).where(User.user_name_key == key).correlate(None)
    by_email = select(UserEmail.user_id).where(UserEmail.value == key).correlate(None)
    if org_id is not None:
        by_name = by_name.where(User.org_id == org_id, User.deleted_at.is_(None))
        by_email = by_email.where(UserEmail.org_id == org_id)
    return User.id.in_(union_all(by_name, by_email))


def find_by_address(session: Session, org_id: str, address: str) -> User | None:
    """Return the live member a person means by `address`: the one whose userName it is, else the
    one (only) whose email it is (an IdP's member is often `jdoe` with jdoe@acme.test as email).
    Emails are not unique and may be edited: two members with it as email, and no userName, is
    Conflict, never either of them."""
    found = session.scalars(select(User).where(
        User.org_id == org_id, User.deleted_at.is_(None), has_address(address, org_id)).limit(50)).all()
    by_name = [user for user in found if user.user_name_key == name_key(address.strip())]
    if by_name:
        return by_name[0]
    if len(found) > 1:
        raise Conflict(f"{address.strip()!r} is the email of {len(found)} members: type the userName of the one "
                       "you mean", field="member")
    return found[0] if found else None


_SAME_NAME = (User.org_id == bindparam("org_id"), User.user_name_key == bindparam("user_name_key"))
LIVE_OR_REMOVED = select(User).from_statement(union_all(
    select(User).where(*_SAME_NAME, User.deleted_at.is_(None)),
    select(User).where(*_SAME_NAME, User.deleted_at.is_not(None)),
))


def find_by_user_name_or_removed(session: Session, org_id: str, user_name: str) -> tuple[User | None, bool]:
    """Return the live user with this userName, and whether a removed user had it; in one query.

    Each half of the UNION probes its own partial index (live users, removed users), so a first
    sign-in learns both with one round trip and no scan of the org.
    """
    found = session.scalars(LIVE_OR_REMOVED, {"org_id": org_id, "user_name_key": name_key(user_name)}).all()
    live = next((user for user in found if user.deleted_at is None), None)
    return live, any(user.deleted_at is not None for user in found)


def get_team(session: Session, org_id: str, team_id: str) -> Team:
    """Return the org's team, or raise NotFound."""
    team = session.get(Team, team_id)
    if team is None or team.org_id != org_id:
        raise NotFound(f"no team {team_id!r} in this org", team_id=team_id)
    return team


# The team's row share-locked (FOR KEY SHARE) and read again, the session's copy refreshed: a change
# that writes a row naming the team (a membership, a key, a rule, an invitation) or the team itself
# waits for a deletion under way (identity.team_deletion, which locks the row FOR UPDATE) and then
# reads it gone, rather than fail on the foreign key or write to a deleted team. The weakest lock:
# it waits for nothing but a deletion and makes no change of the team wait. In identity.group_locks'
# order: after the org's lock, before groups and user rows.
LOCK_TEAM = (select(Team).where(Team.id == bindparam("team_id")).with_for_update(read=True, key_share=True)
             .execution_options(populate_existing=True))


def lock_team(session: Session, org_id: str, team_id: str) -> Team:
    """Return the org's team, share-locked until the transaction ends (LOCK_TEAM), or raise NotFound
    (deleted while this waited for its lock included)."""
    team = session.execute(LOCK_TEAM, {"team_id": team_id}).scalar_one_or_none()
    if team is None or team.org_id != org_id:
        raise NotFound(f"no team {team_id!r} in this org", team_id=team_id)
    return team


def default_team(session: Session, org_id: str) -> Team:
    """Return the org's `Default` team."""
    return session.scalars(select(Team).where(Team.org_id == org_id, Team.is_default.is_(True))).one()


DEFAULT_TEAM_ID = select(Team.id).where(Team.org_id == bindparam("org_id"), Team.is_default.is_(True))


def default_team_id(session: Session, org_id: str) -> str:
    """Return the id of the org's `Default` team (its id alone: provisioning needs no more)."""
    return session.execute(DEFAULT_TEAM_ID, {"org_id": org_id}).scalar_one()


def acting_user_id(session: Session, actor: Actor) -> str | None:
    """Return the member a person's actor speaks for (a signed-in user, or an API key's holder); None otherwise."""
    if actor.type == "user":
        return actor.id
    if actor.type == "api_key":
        return session.scalar(select(ApiKey.user_id).where(ApiKey.id == actor.id))
    return None
