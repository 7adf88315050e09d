"""Deleting a team (DESIGN.md section 3.1), which reaches into every module that names teams.

Its own module because it sits above them all: the group mappings into the team are deleted
(identity.groups and identity.group_membership, which themselves rename and create teams),
pending invitations to it expire (identity.invitations), its keys are revoked
(identity.key_revocation), its wallet's undelivered top-up requests are cancelled
(identity.topups), its memberships end.
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from audit import Actor, record
from audit.log import Target
from identity import invitations, key_revocation, mappings, seats, topups, wallets
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, NotFound, PermissionDenied
from identity.group_defaults import defaults_of, settle_defaults
from identity.group_locks import lock_groups
from identity.lookups import get_team
from identity.models import ApiKey, GroupMapping, IdpGroup, Invitation, RoleGrant, Team
from identity.roles import authorize, refusal
from identity.vocabulary import InvitationStatus, Role


def delete_team(session: Session, actor: Actor, org_id: str, team_id: str, *, confirm: str | None = None) -> None:
    """Delete a team: its memberships end, its API keys are revoked, the group mappings into it are
    deleted, its pending invitations expire and its wallet's undelivered top-up requests are
    cancelled, each audited; `team.deleted` records the wallet's balance. `Default` stays. Refused while
    the payment hook holds a top-up request of the team (its payment would find no team): 409 for an
    owner, who cancels it first (identity.topups.cancel_request); 403 for an admin, as for a balance.

    `confirm` must be the team's name, exactly, when given: the admin API and the console always
    give what the person typed ("Delete 'Platform'? This cannot be undone."); None is for callers
    that confirmed otherwise (the operator's tools, tests).
    Revoked keys and past invitations stay as records with their team unset (the foreign key
    sets it NULL); the audit events say which team it was.
    """
    authorize(actor, "teams.manage", org_id=org_id)
    seats.lock_org(session, org_id)
    if get_team(session, org_id, team_id).is_default:
        raise InvalidValue("the Default team cannot be deleted", field="team_id")
    team, balance = _lock_for_deletion(session, org_id, team_id)
    if confirm is not None and confirm != team.name:
        raise InvalidValue(f"confirm must be the team's name, {team.name!r}, to delete it", field="confirm")
    held = topups.charging(session, team.id)
    _ensure_may_lose(actor, org_id, balance, held)
    _ensure_nothing_charging(held)
    # Deleting the team removes its members from it and revokes their keys for it: what removing each
    # of them would do, so no more than the actor may do to each (an admin may not to an owner).
    authorize(actor, "member.remove_from_team", org_id=org_id,
              target_role=Role.OWNER if _has_an_owner(session, org_id, team.id) else None)
    # The team's keys first: its rules' groups, re-derived below, would revoke their members' as `left_team`.
    revoked = key_revocation.revoke_keys_of_team(session, org_id, team.id)
    for rule in session.scalars(select(GroupMapping).where(GroupMapping.org_id == org_id,
                                                            GroupMapping.team_id == team.id)).all():
        mappings.delete_mapping(session, actor, org_id, rule.id)
    pending = select(Invitation).where(
        Invitation.org_id == org_id, Invitation.team_id == team.id, Invitation.status == InvitationStatus.PENDING)
    for invitation in session.scalars(pending).all():
        invitations.expire(session, invitation, actor, reason="team_deleted")
    topups.close_team_wallet(session, actor, org_id, team.id)
    members = session.scalar(select(func.count(func.distinct(RoleGrant.user_id))).where(RoleGrant.team_id == team.id))
    # Members whose team a group gave (a mirrored group's) may be left with no group team: Default again.
    grouped = list(session.scalars(select(RoleGrant.user_id).where(
        RoleGrant.team_id == team.id, RoleGrant.source_ref != "").distinct()))
    session.execute(delete(RoleGrant).where(RoleGrant.team_id == team.id))
    defaults = defaults_of(session, org_id)
    # Their keys for this team went above; for another team only where a provisioned Default grant
    # still stood beside group grants (before 2026-12) and gives way now.
    left = settle_defaults(session, org_id, grouped, defaults, left_group_team=grouped)
    record(session, actor, Action.TEAM_DELETED, Target("team", team.id, team.name),
           {"name": team.name, "members_removed": members, "keys_revoked": revoked, "balance_micros": balance,
            "defaults": defaults, **({"keys_revoked_left_team": left} if left else {})}, org_id=org_id)
    session.delete(team)
    session.flush()
    # The database unset the team of the keys and invitations that named it; so must the session.
    for row in session.identity_map.values():
        if isinstance(row, (ApiKey, Invitation)) and row.team_id == team.id:
            set_committed_value(row, "team_id", None)


# The team's row locked against every other lock on it (FOR UPDATE, which waits for and then makes wait
# identity.lookups.LOCK_TEAM's FOR KEY SHARE and a foreign key's check), read again.
_LOCK_FOR_DELETION = (select(Team).where(Team.id == bindparam("team_id")).with_for_update()
                      .execution_options(populate_existing=True))


def _lock_for_deletion(session: Session, org_id: str, team_id: str) -> tuple[Team, int]:
    """Lock what the deletion will change, the team's row last, before reading anything it ends
    (identity.group_locks' order), and return the team read again under its lock with its wallet's
    balance (0 when it never had a wallet: one is made and locked).

    With the org's lock (taken first) the deletion waits for, and makes wait, every change that takes
    it: a key, a rule, an invitation, an acceptance, a member's deletion. With the team's row locked
    FOR UPDATE it waits for, and makes wait, the rest that names the team: a membership added or
    changed, a rename (identity.lookups.lock_team), so that each either commits before the deletion
    reads what it ends or finds the team gone (NotFound), never writes to it unseen or fails on its
    foreign key. Before the team's row: the groups whose members the team's rules or mirror give it
    (an IdP's change of such a group inserts grants into the team, whose foreign key check waits for
    this lock, while holding the group this deletion re-derives) and its wallet (a debit locks the
    wallet, then the team's row FOR KEY SHARE: identity.wallet_locks).
    """
    governed = {group.id for rule in session.scalars(select(GroupMapping).where(
        GroupMapping.org_id == org_id, GroupMapping.team_id == team_id)).all()
        for group in mappings.groups_matching(session, rule)}
    mirrored = session.scalars(select(IdpGroup.id).where(IdpGroup.org_id == org_id, IdpGroup.team_id == team_id))
    sources = session.scalars(select(RoleGrant.source_ref).where(
        RoleGrant.team_id == team_id, RoleGrant.source_ref != "").distinct())
    lock_groups(session, governed | set(mirrored) | set(sources))
    balance = wallets.lock_wallet(session, org_id, team_id).wallet.balance_micros
    team = session.execute(_LOCK_FOR_DELETION, {"team_id": team_id}).scalar_one_or_none()
    if team is None or team.org_id != org_id:
        raise NotFound(f"no team {team_id!r} in this org", team_id=team_id)
    return team, balance


def _ensure_may_lose(actor: Actor, org_id: str, balance: int, charging: list[str]) -> None:
    """Refuse the deletion of a team whose wallet holds money, or is owed it (a top-up request the
    payment hook holds: identity.topups.charging), to whoever may not manage wallets: the balance goes
    to no other team and no top-up or debit reaches it again, so deleting it spends the org's money,
    which is the owner's (DESIGN 3.2: wallets are the owner's; an admin never gains that power through
    a team it may delete). Asked under the wallet's lock, before anything is written."""
    reason = refusal(actor, "wallets.manage", org_id=org_id) if balance > 0 or charging else None
    if reason is not None:
        held = f" and the payment hook is charging for top-up request {charging[0]}" if charging else ""
        raise PermissionDenied(f"the team's wallet holds {balance} micro-cents{held}, which deleting it would lose: "
                               f"only an owner may delete it ({reason})", action="wallets.manage",
                               balance_micros=balance, **({"topup_request_ids": charging} if charging else {}))


def _ensure_nothing_charging(charging: list[str]) -> None:
    """Refuse (409) the deletion, an owner's too, while the payment hook holds a top-up request of the
    team: its payment, arriving after, would find no team (NotFound) and the money charged would be
    credited nowhere. The owner cancels the request first (identity.topups.cancel_request, having
    stopped the charge) or waits for its payment (then the balance is the owner's to lose)."""
    if charging:
        raise Conflict(f"the payment hook holds top-up request {charging[0]} of this team, not yet paid: its "
                       "payment would be lost with the team; cancel the request (POST .../wallet/topup-requests/"
                       f"{charging[0]}/cancel) or wait for its payment, then delete the team",
                       field="team_id", topup_request_ids=charging)


def _has_an_owner(session: Session, org_id: str, team_id: str) -> bool:
    """Tell whether an owner of the org is among the team's members or the holders of its keys (the
    one role the rules set apart: acting on an owner needs `owners.manage`)."""
    people = select(RoleGrant.user_id).where(RoleGrant.team_id == team_id).union(
        select(ApiKey.user_id).where(ApiKey.team_id == team_id, ApiKey.user_id.is_not(None)))
    owner = session.scalar(select(RoleGrant.user_id).where(
        RoleGrant.org_id == org_id, RoleGrant.team_id.is_(None), RoleGrant.role == Role.OWNER,
        RoleGrant.user_id.in_(people)).limit(1))
    return owner is not None
