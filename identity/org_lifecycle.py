"""An org's end of life and change of hands (DESIGN.md 3.2: owner only): transferring ownership in
one step, and deleting the org.

Deleting keeps the org row (marked `deleted_at`) and its whole audit log: the operator can still
export and verify it (`identity audit export|verify --org SLUG`), and the slug is never reused.
Everything that could still act for the org stops in the same transaction: members deprovisioned
(keys revoked, sessions ended, seats freed), SCIM tokens and OAuth clients revoked, pending
invitations expired, any key left (a team's own) revoked, SSO removed and no longer required.
"""

from __future__ import annotations

from sqlalchemy import column, delete, select, table
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import group_locks, invitations, key_revocation, orgs, scim_credentials, seats, users
from identity.actions import Action
from identity.errors import InvalidValue, NotFound
from identity.grants import org_role
from identity.lookups import acting_user_id, get_user, lock_live_user
from identity.models import ApiKey, Invitation, Org, ScimClient, ScimToken, User
from identity.roles import authorize
from identity.vocabulary import InvitationStatus, KeyStatus, KeyStatusReason, Role

# The SAML adapter's table, by name: the domain only removes an org's connection (identity.orgs reads it so).
SAML_CONNECTIONS = table("saml_connections", column("org_id"))


def live_org(session: Session, org_id: str) -> Org:
    """Return the org, or raise NotFound once it is deleted."""
    org = session.get(Org, org_id)
    if org is None or org.deleted_at is not None:
        raise NotFound(f"no org {org_id!r}", org_id=org_id)
    return org


def transfer_ownership(session: Session, actor: Actor, org_id: str, user_id: str, *,
                       from_user_id: str | None = None) -> User:
    """Make `user_id` an owner and its caller an admin, in one transaction; return the new owner.

    The new owner must be an active member. The previous owner is the person calling (signed in,
    or through their key); an operator (the system actor) names them with `from_user_id`. Either
    role change refused (a group that grants the caller `owner` still) refuses the whole transfer.
    """
    authorize(actor, "org.transfer_ownership", org_id=org_id)
    org = live_org(session, org_id)
    previous = acting_user_id(session, actor) or from_user_id
    if previous is None:
        raise InvalidValue("name the owner who hands over (from_user_id)", field="from_user_id")
    get_user(session, org_id, user_id)
    seats.lock_org(session, org_id)
    # Read again under the org's lock: a deactivation or deletion that held it is seen, not the member
    # as read before the wait (NotFound once deleted).
    new_owner = lock_live_user(session, user_id)
    if not new_owner.active:
        raise InvalidValue(f"{new_owner.user_name} is deactivated: the new owner must be an active member",
                           field="user_id")
    if new_owner.id == previous:
        raise InvalidValue("the new owner must be another member than the one handing over", field="user_id")
    if org_role(session, previous) != Role.OWNER:  # an operator naming a non-owner would promote them
        raise InvalidValue("the member handing over must be an owner of this org", field="from_user_id")
    users.change_role(session, actor, org_id, new_owner.id, Role.OWNER)
    users.change_role(session, actor, org_id, previous, Role.ADMIN)
    record(session, actor, Action.ORG_OWNERSHIP_TRANSFERRED, Target("org", org_id, org.slug),
           {"from_user_id": previous, "to_user_id": new_owner.id}, org_id=org_id)
    return new_owner


def delete_org(session: Session, actor: Actor, org_id: str, *, confirm: str) -> Org:
    """Delete the org; `confirm` must be its slug. Long because it is one checklist, in order."""
    authorize(actor, "org.delete", org_id=org_id)
    org = live_org(session, org_id)
    if confirm != org.slug:
        raise InvalidValue(f"confirm must be the org's slug, {org.slug!r}, to delete it", field="confirm")
    seats.lock_org(session, org_id)
    if org.require_sso:
        orgs.update_settings(session, actor, org_id, {"require_sso": False})
    group_locks.lock_org_groups(session, org_id)  # before any member's row (users.deprovision)
    members = list(session.scalars(select(User).where(User.org_id == org_id, User.deleted_at.is_(None))
                                   .order_by(User.created_at, User.id)))
    for user in members:
        users.deprovision(session, actor, user)
    for token in session.scalars(select(ScimToken).where(ScimToken.org_id == org_id,
                                                         ScimToken.revoked_at.is_(None))).all():
        scim_credentials.revoke_scim_token(session, actor, org_id, token.id)
    for client in session.scalars(select(ScimClient).where(ScimClient.org_id == org_id,
                                                           ScimClient.revoked_at.is_(None))).all():
        scim_credentials.revoke_scim_client(session, actor, org_id, client.id)
    pending = select(Invitation).where(Invitation.org_id == org_id, Invitation.status == InvitationStatus.PENDING)
    for invitation in session.scalars(pending).all():
        invitations.expire(session, invitation, actor, reason="org_deleted")
    left = _revoke_remaining_keys(session, org_id)
    connection = SAML_CONNECTIONS.c.org_id == org_id
    sso = session.execute(select(SAML_CONNECTIONS.c.org_id).where(connection)).first() is not None
    session.execute(delete(SAML_CONNECTIONS).where(connection))
    org.deleted_at = clock.now()
    record(session, actor, Action.ORG_DELETED, Target("org", org.id, org.slug), {
        "deleted_at": org.deleted_at.isoformat(), "members_deprovisioned": len(members), "keys_revoked": left,
        "sso_disabled": bool(sso), "confirm": confirm}, org_id=org_id)
    return org


def _revoke_remaining_keys(session: Session, org_id: str) -> list[str]:
    """Revoke every key of the org still usable once its members are gone (a team's own keys); their prefixes."""
    where = (ApiKey.org_id == org_id, ApiKey.status != KeyStatus.REVOKED)
    prefixes = list(session.scalars(select(ApiKey.prefix).where(*where).order_by(ApiKey.prefix)))
    if prefixes:
        for key in session.scalars(select(ApiKey).where(*where)):
            key.status, key.status_reason = KeyStatus.REVOKED, KeyStatusReason.ORG_DELETED
            key_revocation.ended(session, [key.id])
    return prefixes
