"""Keys an older release left behind (DESIGN.md 3.7): a member's key for a team they no longer
belong to, still `active` (or `blocked`).

Since 2026-12-06 every way of leaving a team revokes the member's keys for it (`left_team`,
identity.key_revocation.revoke_keys_of_teams_left). Before, a team lost through an IdP group change left
them as they were: the key check refused them (no membership), but lists called them active, and
the holder's return to the team made the same secret work again. `identity keys settle` (and
`identity db upgrade` and `identity serve`, after migrating) revokes them here, through the same
function, one transaction and one `api_key.revoked_left_team` event per org that had any; an
org with none is not written to, so a second run changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from audit import Actor, record
from audit.log import Target
from identity import key_revocation, seats
from identity.actions import Action
from identity.errors import PermissionDenied
from identity.models import ApiKey, Org, User
from identity.vocabulary import KeyStatusReason


@dataclass(frozen=True)
class LeftKey:
    """A key whose holder has no grant in its team: what a settling would revoke (never its secret)."""

    prefix: str
    holder: str  # the holder's userName
    team_id: str
    status: str


def _members(org_id: str) -> Select[Any]:
    return select(User.id).where(User.org_id == org_id)


def orgs_with_left_keys(session: Session) -> list[tuple[str, str]]:
    """Return (id, slug) of every live org that holds such a key, in one SELECT: the orgs a settling
    after an upgrade visits, so that a database with none (every one after the first) costs no more."""
    # a key's holder is of its org
    holding = select(ApiKey.org_id).where(*key_revocation.of_teams_left(select(User.id)))
    found = session.execute(select(Org.id, Org.slug).where(Org.deleted_at.is_(None), Org.id.in_(holding))
                            .order_by(Org.created_at))
    return [(org_id, slug) for org_id, slug in found]


def left_keys(session: Session, org_id: str) -> list[LeftKey]:
    """Return the org's keys whose holder has no grant in the key's team, by prefix. Reads only."""
    rows = session.execute(
        select(ApiKey.prefix, User.user_name, ApiKey.team_id, ApiKey.status).join(User, User.id == ApiKey.user_id)
        .where(*key_revocation.of_teams_left(_members(org_id))).order_by(ApiKey.prefix))
    return [LeftKey(prefix, holder, str(team_id), str(status)) for prefix, holder, team_id, status in rows]


def settle_keys(session: Session, actor: Actor, org_id: str) -> list[str]:
    """Revoke (`left_team`) the org's keys whose holder has no grant in the key's team; return their
    prefixes, named in one `api_key.revoked_left_team` event (none when there were none).

    The operators' act (a system actor), under the org's lock, so that it is serialised with the
    group changes and deletions that take it; a deleted org's keys were all revoked with it.
    """
    if actor.type != "system":
        raise PermissionDenied("only the service's operators settle an org's keys")
    org = seats.lock_org(session, org_id, or_deleted=True)
    if org.deleted_at is not None:
        return []
    revoked = key_revocation.revoke_keys_of_teams_left(session, _members(org_id))
    if revoked:
        record(session, actor, Action.API_KEY_REVOKED_LEFT_TEAM, Target("org", org.id, org.slug),
               {"keys_revoked": revoked, "reason": KeyStatusReason.LEFT_TEAM}, org_id=org_id)
    return revoked
