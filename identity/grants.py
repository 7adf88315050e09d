"""What a member's role grants add up to (DESIGN.md section 3.2): the highest grant wins.

One place for "what is this user's org role", asked by users, keys, owners and the adapters
alike; nothing else ranks a member's grants.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from identity.models import RoleGrant, User
from identity.roles import RANK, ROLES, highest
from identity.transaction_sets import TransactionSet
from identity.vocabulary import Role

# The ids of the org-wide grants this session's transaction took away (deleted): identity.sessions.
# confirm_role counts a grant of its caller gone since the org's lock only when its own write took it,
# never one that a change it waited for took (an IdP's removal from a group, an add replacing a
# provisioned default). Every statement that deletes org-wide grants tells `record_taken`, from its RETURNING
# or the ids it deleted by; forgotten when the transaction ends.
_TAKEN: TransactionSet[int] = TransactionSet("identity.grants_taken")


def record_taken(session: Session, grant_ids: Iterable[int]) -> None:
    """Record that this transaction deleted the grants of these ids."""
    _TAKEN.add(session, grant_ids)


def taken_grants(session: Session) -> frozenset[int]:
    """The ids of the grants this transaction deleted (`record_taken`)."""
    return _TAKEN.of(session)


def org_role(session: Session, user_id: str) -> Role | None:
    """Return the user's org role: the highest of its org-wide grants."""
    return highest(session.scalars(
        select(RoleGrant.role).where(RoleGrant.user_id == user_id, RoleGrant.team_id.is_(None))
    ))


# The org role of the User a query reads, as a column of it: the rank of its highest org-wide grant
# (None: no grant), for `role_of_rank`. A member's role and row in one round trip.
ORG_ROLE_RANK = select(func.max(case(RANK, value=RoleGrant.role))).where(
    RoleGrant.user_id == User.id, RoleGrant.team_id.is_(None)).scalar_subquery()


def role_of_rank(rank: int | None) -> Role | None:
    """Return the role ORG_ROLE_RANK read (None for none)."""
    return None if rank is None else ROLES[rank]


def org_roles(session: Session, user_ids: list[str]) -> dict[str, Role]:
    """Return the org role of each of `user_ids` that has one, in one query (a page of members)."""
    found: dict[str, list[Role]] = {}
    for user_id, role in session.execute(select(RoleGrant.user_id, RoleGrant.role).where(
            RoleGrant.user_id.in_(user_ids), RoleGrant.team_id.is_(None))):
        found.setdefault(user_id, []).append(role)
    return {user_id: max(roles, key=RANK.__getitem__) for user_id, roles in found.items()}


def ungrouped_org_role(session: Session, user_id: str) -> Role | None:
    """Return the highest org role the user holds from grants no IdP group gave (manual, invitation,
    provisioning's default): what a manual role change replaces."""
    return highest(session.scalars(select(RoleGrant.role).where(
        RoleGrant.user_id == user_id, RoleGrant.team_id.is_(None), RoleGrant.source_ref == "")))


def roles_for_key(session: Session, user_id: str, team_id: str, default_role: Role) -> tuple[Role, Role | None]:
    """Return the user's org role (the org's `default_role` when no grant gives one) and its role in
    one team, in one query: what a verified API key acts with."""
    rows = list(session.execute(select(RoleGrant.team_id, RoleGrant.role).where(RoleGrant.user_id == user_id)))
    org = highest(role for team, role in rows if team is None) or default_role
    return org, highest(role for team, role in rows if team == team_id)


def team_roles(session: Session, user_id: str) -> dict[str, Role]:
    """Return {team id: the highest team role} for the user's teams."""
    return teams_roles(session, [user_id]).get(user_id, {})


def teams_roles(session: Session, user_ids: list[str]) -> dict[str, dict[str, Role]]:
    """Return {user id: {team id: the highest team role}} for each of `user_ids` in a team, in one
    query (a page of members)."""
    rows = session.execute(select(RoleGrant.user_id, RoleGrant.team_id, RoleGrant.role).where(
        RoleGrant.user_id.in_(user_ids), RoleGrant.team_id.is_not(None)))
    roles: dict[str, dict[str, list[Role]]] = {}
    for user_id, team_id, role in rows:
        if team_id is not None:
            roles.setdefault(user_id, {}).setdefault(team_id, []).append(role)
    return {user_id: {team_id: highest(found) or Role.MEMBER for team_id, found in teams.items()}
            for user_id, teams in roles.items()}
