"""The provisioned defaults against what IdP groups give (DESIGN.md section 3.3).

"A user whom no group maps anywhere gets the org's default role and joins the Default team."
Provisioning by SCIM or SAML (users.provision_user) writes both as grants of that source with no
`source_ref`. While an IdP group gives the member an org role, the provisioned org-role grant is
taken away (otherwise the highest grant wins: a group mapping to `viewer` would leave `member`);
when the last such group grant goes it comes back, with the org's current default role and the
user's provisioning source (`User.source`, which never changes). Likewise the Default team grant
against group team grants, with one difference: it comes back only to a member from whom the
change took a group's team grant (`left_group_team`), the change that leaves them mapped nowhere.
A member an admin took out of Default (teams.remove_team_member, every source's grant) is no
group's doing: a later change that takes no team from them (a group giving an org role only,
joined or left) leaves them out, as the admin left them. Manual and invitation grants are never
touched, and a member holding one is given nothing back.

The one place every change of group grants ends in (identity.group_membership add_members,
remove_members and so identity.groups' reapply, delete_group and the SAML claims;
identity.group_sync's re-derivation), in the same transaction. So it is also where a member who has
lost a team that way (a group's team, or the Default team giving way to one) loses their keys for
it, as a removal by hand does (identity.key_revocation.revoke_keys_of_teams_left; DESIGN 3.7).
Set-based: four statements per batch of members (three when nobody left a group's team), whatever
its size, the grants read by user (ix_role_grants_user), then the keys' one (two when it finds
some). The events of those changes carry `defaults` (the role and team restored, and `team_back`: to
whom) and `keys_revoked`, from which identity.replay settles the same members by the same rule.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, exists, insert, literal, null, select
from sqlalchemy.orm import Session, aliased

from audit import clock
from identity import key_revocation
from identity.grants import record_taken
from identity.lookups import default_team_id
from identity.models import Org, RoleGrant, User
from identity.vocabulary import GrantSource, Role

IDP_SOURCES = (GrantSource.SCIM, GrantSource.SAML)  # the channels that provision and carry groups
# The member's other grants, in the statements' EXISTS: one named alias, made once, so that the four
# statements' cache keys are the same on every call (an anonymous alias per call compiled them anew
# each time: the group PATCH's CPU doubled).
_OTHER = aliased(RoleGrant, name="other_grant")


# Recorded in `defaults`: the Default team comes back only to a member whose group team a change
# took (before 2026-12-06, to every member a change touched: identity.replay reads which rule held).
TEAM_BACK = "on_losing_a_group_team"


def defaults_of(session: Session, org_id: str) -> dict[str, Any]:
    """Return what a member whom no group maps gets: the org's default role and its Default team."""
    org = session.get(Org, org_id)
    assert org is not None
    return {"org_role": Role(org.default_role), "team_id": default_team_id(session, org_id), "team_back": TEAM_BACK}


def settle_defaults(session: Session, org_id: str, users: list[str] | Select[Any], defaults: dict[str, Any], *,
                    left_group_team: Collection[str] | Select[Any] = ()) -> list[str]:
    """Take away or give back the provisioned defaults of `users` (ids, or a query of them) after
    their group grants changed, then revoke their keys for the teams they are no longer in; return
    those keys' prefixes for the change's event (`keys_revoked`). See the module's docstring.

    `left_group_team`: those of `users` from whom the change took a group's team grant (ids, or a
    query run before the grants went); only they may get the Default team back.
    """
    left = left_group_team if isinstance(left_group_team, Select) else set(left_group_team)
    batches = [users[start:start + 500] for start in range(0, len(users), 500)] if isinstance(users, list) else [users]
    for batch in batches:
        _settle(session, org_id, batch, defaults, _among(left, batch))
    return key_revocation.revoke_keys_of_teams_left(session, users)


def _among(left: Select[Any] | set[str], batch: list[str] | Select[Any]) -> list[str] | Select[Any]:
    """Those of a batch of users who left a group's team (the query itself, when it is one; the batch
    itself, when it is all of them: _settle then needs no second list of them)."""
    if isinstance(left, Select):
        return left
    if not isinstance(batch, list):
        return sorted(left)
    among = [user_id for user_id in batch if user_id in left]
    return batch if len(among) == len(batch) else among


def _settle(session: Session, org_id: str, users: list[str] | Select[Any], defaults: dict[str, Any],
            left_group_team: list[str] | Select[Any]) -> None:
    if isinstance(users, list) and not users:
        return
    role, team_id = defaults["org_role"], defaults["team_id"]
    other = _OTHER

    def held(user_id: Any, *where: ColumnElement[bool]) -> ColumnElement[bool]:
        return exists().where(other.user_id == user_id, *where)

    by_group = and_(other.source.in_(IDP_SOURCES), other.source_ref != "")
    provisioned = and_(RoleGrant.user_id.in_(users), RoleGrant.source.in_(IDP_SOURCES), RoleGrant.source_ref == "")
    record_taken(session, session.scalars(delete(RoleGrant).where(
        provisioned, RoleGrant.team_id.is_(None),
        held(RoleGrant.user_id, other.team_id.is_(None), by_group)).returning(RoleGrant.id)
        .execution_options(synchronize_session=False)))
    session.execute(delete(RoleGrant).where(
        provisioned, RoleGrant.team_id == team_id,
        held(RoleGrant.user_id, other.team_id.is_not(None), by_group)).execution_options(synchronize_session=False))
    live = and_(User.id.in_(users), User.org_id == org_id, User.deleted_at.is_(None), User.source.in_(IDP_SOURCES))
    now = literal(clock.now())
    columns = ["org_id", "user_id", "team_id", "role", "source", "source_ref", "created_at"]
    session.execute(insert(RoleGrant).from_select(columns, select(
        User.org_id, User.id, null(), literal(role.value), User.source, literal(""), now,
    ).where(live, ~held(User.id, other.team_id.is_(None)))))
    if isinstance(left_group_team, list) and not left_group_team:
        return  # nobody's group team went: nobody's Default team comes back (one taken by hand stays taken)
    rejoining = live if left_group_team is users else and_(live, User.id.in_(left_group_team))
    session.execute(insert(RoleGrant).from_select(columns, select(
        User.org_id, User.id, literal(team_id), literal(Role.MEMBER.value), User.source, literal(""), now,
    ).where(rejoining, ~held(User.id, other.team_id.is_not(None), by_group), ~held(User.id, other.team_id == team_id))))
