"""Invitations (DESIGN.md section 3.6): one-time links, hashed, valid for 7 days, audited."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from sqlalchemy import ColumnElement, and_, func, or_, select, true, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from audit import Actor, clock, record
from audit.log import Target
from identity import config, outbox, seats, tokens, users
from identity.actions import Action
from identity.errors import Conflict, DomainError, InvalidValue, NotFound, Unauthenticated
from identity.grants import org_role
from identity.lookups import default_team, find_by_address, lock_team
from identity.models import ApiKey, Invitation, Org, User
from identity.names import checked_address, name_key
from identity.roles import authorize, capped, parse_role, refusal
from identity.vocabulary import GrantSource, InvitationStatus, Role

LIFETIME = dt.timedelta(days=7)
LINK_PATH = "/invite/"  # BASE_URL + this + the token: the page that accepts or declines


def accept_link(base_url: str | None, token: str) -> str:
    """Return the link a person follows to accept or decline (BASE_URL, else the environment's)."""
    return f"{(base_url or config.base_url()).rstrip('/')}{LINK_PATH}{token}"


def status_now(invitation: Invitation) -> InvitationStatus:
    """The invitation's status as of now: a pending one past its time reads as expired, swept or not."""
    if invitation.status == InvitationStatus.PENDING and invitation.expires_at <= clock.now():
        return InvitationStatus.EXPIRED
    return invitation.status


def status_is(status: InvitationStatus) -> ColumnElement[bool]:
    """The condition "its status as of now is `status`" (status_now's rule, in SQL, for a query to filter by)."""
    live = Invitation.expires_at > clock.now()
    if status == InvitationStatus.PENDING:
        return and_(Invitation.status == InvitationStatus.PENDING, live)
    if status == InvitationStatus.EXPIRED:
        return or_(Invitation.status == InvitationStatus.EXPIRED,
                   and_(Invitation.status == InvitationStatus.PENDING, ~live))
    return Invitation.status == status


def parse_status(value: str) -> InvitationStatus:
    """Return the status named `value`; any other is refused, naming the field."""
    try:
        return InvitationStatus(value)
    except ValueError:
        raise InvalidValue(f"status must be one of {', '.join(InvitationStatus)}", field="status") from None


def pending_count(session: Session, org_id: str) -> int:
    """How many invitations of the org are pending and unexpired: the seats they will take."""
    return session.scalar(select(func.count()).select_from(Invitation).where(
        Invitation.org_id == org_id, status_is(InvitationStatus.PENDING))) or 0


def _queue_mail(session: Session, invitation: Invitation, link: str) -> str:
    org = session.get_one(Org, invitation.org_id)
    body = (f"You are invited to join {org.name} as {invitation.role}.\n\n"
            f"Accept or decline here (the link works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n"
            f"{link}\n\nIf you did not expect this invitation, ignore this mail.\n")
    mail = outbox.queue(session, invitation.org_id, kind="invitation", ref=_target(invitation),
                        recipient=invitation.email, subject=f"Invitation to {org.name}", body=body, link=link,
                        expires_at=invitation.expires_at)
    return mail.id


def _target(invitation: Invitation) -> Target:
    return Target("invitation", invitation.id, invitation.email)


def invite(session: Session, actor: Actor, org_id: str, *, email: str, role: str = Role.MEMBER,
           team_id: str | None = None, base_url: str | None = None) -> tuple[Invitation, str]:
    """Invite `email` with a role into a team; return the invitation and its link token (shown once).

    The team defaults to the inviter's key's team, else `Default`. The mail with the accept link
    is queued in the outbox (identity.outbox) in the same transaction.

    Under the org's lock, then the team's (identity.lookups.lock_team): an invitation sent while its
    org or team is being deleted waits and is refused (NotFound), and one sent before is found
    pending by the deletion and expired, its mail cancelled.
    """
    role = parse_role(role)
    authorize(actor, "owners.manage" if role == Role.OWNER else "members.manage", org_id=org_id)
    email = checked_address(email)
    seats.lock_org(session, org_id)
    _ensure_invitable(session, org_id, email)
    team_id = team_id or _inviter_team(session, actor) or default_team(session, org_id).id
    lock_team(session, org_id, team_id)
    new = tokens.generate("inv")
    now = clock.now()
    invitation = Invitation(id=str(uuid.uuid4()), org_id=org_id, email=email, role=role, team_id=team_id,
                            prefix=new.prefix, secret_hash=new.hash, status=InvitationStatus.PENDING,
                            invited_by=actor.id, created_at=now, expires_at=now + LIFETIME)
    session.add(invitation)
    mail_id = _queue_mail(session, invitation, accept_link(base_url, new.plaintext))
    record(session, actor, Action.INVITATION_CREATED, _target(invitation),
           {"email": email, "role": role, "team_id": team_id, "expires_at": invitation.expires_at.isoformat(),
            "mail_id": mail_id, tokens.FINGERPRINT: tokens.fingerprint(new.hash)}, org_id=org_id)
    return invitation, new.plaintext


def check_invitation(session: Session, actor: Actor, org_id: str, *, email: str, role: str = Role.MEMBER) -> str:
    """Return `email` checked as `invite` would check it, and refuse what `invite` would refuse about
    the person (a member already, or invited and not yet answered), changing nothing: the step a
    dialog shows before sending, so that its person is told next to the address, not after "Send".
    `invite` checks again under the org's lock; this answer is only as fresh as its read. The org's
    cap on mail to the address (identity.outbox.ensure_under_cap) is told here too, for the same reason."""
    role = parse_role(role)
    authorize(actor, "owners.manage" if role == Role.OWNER else "members.manage", org_id=org_id)
    email = checked_address(email)
    _ensure_invitable(session, org_id, email)
    outbox.ensure_under_cap(session, org_id, email)
    return email


def _ensure_invitable(session: Session, org_id: str, email: str) -> None:
    _ensure_not_a_member(session, org_id, email)
    _ensure_not_invited(session, org_id, email)


def _ensure_not_invited(session: Session, org_id: str, email: str, *, besides: str | None = None) -> None:
    """Refuse a second invitation to an address with one pending (other than `besides`): two links, two
    mails, and two seats counted as taken (pending_count) for one person; resend the pending one instead.

    The address compares by its key (identity.names.name_key, kept in `email_key`), as a member's
    addresses do: `Ann@X.test` and `ann@x.test`, or an `é` typed as one character or two, are one
    person. Asked under the org's lock (invite, resend), it sees every invitation committed before:
    two admins inviting one address at once are served one after the other, the second refused."""
    pending = session.scalar(select(Invitation.id).where(
        Invitation.org_id == org_id, Invitation.email_key == name_key(email),
        (Invitation.id != besides) if besides is not None else true(),
        status_is(InvitationStatus.PENDING)).limit(1))
    if pending is not None:
        raise Conflict(f"{email} already has a pending invitation: resend it from the members page",
                       field="email", invitation_id=pending)


def _managed(session: Session, actor: Actor, org_id: str, invitation_id: str) -> Invitation:
    """The invitation, once `actor` may manage it (an owner's invitation needs `owners.manage`)."""
    authorize(actor, "members.manage", org_id=org_id)
    invitation = get_invitation(session, org_id, invitation_id)
    if invitation.role == Role.OWNER:
        authorize(actor, "owners.manage", org_id=org_id)
    return invitation


def resend(session: Session, actor: Actor, org_id: str, invitation_id: str, *,
           base_url: str | None = None) -> tuple[Invitation, str]:
    """Send an invitation again with a new link: the old link ends, an expired invitation is pending
    again for LIFETIME. Accepted, declined and revoked ones cannot be resent.

    The resender becomes its sender (`invited_by`): the new link is theirs to stand behind, and an
    acceptance asks whether they may still invite at its role, not whoever sent it first (who
    may have left, which is often why it is resent).

    An expired one whose address has been invited again since (and is pending) is refused, as a new
    invitation would be: one pending invitation per address (`_ensure_not_invited`)."""
    invitation = _managed(session, actor, org_id, invitation_id)
    seats.lock_org(session, org_id)  # as invite: the address's other invitations as committed, below
    before, sender = status_now(invitation), invitation.invited_by
    if before not in (InvitationStatus.PENDING, InvitationStatus.EXPIRED):
        raise Conflict(f"this invitation is {before}: invite again instead", field="invitation_id",
                       invitation_status=before)
    if before == InvitationStatus.EXPIRED:  # pending again: the address may have been invited anew since
        _ensure_not_invited(session, org_id, invitation.email, besides=invitation.id)
    new = tokens.generate("inv")
    if not _settle(session, invitation, prefix=new.prefix, secret_hash=new.hash, status=InvitationStatus.PENDING,
                   expires_at=clock.now() + LIFETIME, invited_by=actor.id):
        raise _changed_meanwhile(session, invitation, Conflict, "invitation_id")
    cancelled = outbox.cancel(session, invitation.id)
    mail_id = _queue_mail(session, invitation, accept_link(base_url, new.plaintext))
    changes: dict[str, object] = {"status": {"before": before, "after": InvitationStatus.PENDING},
                                  "expires_at": invitation.expires_at.isoformat(), "mails_cancelled": cancelled,
                                  "mail_id": mail_id, tokens.FINGERPRINT: tokens.fingerprint(new.hash)}
    if sender != actor.id:
        changes["invited_by"] = {"before": sender, "after": actor.id}
    record(session, actor, Action.INVITATION_RESENT, _target(invitation), changes, org_id=org_id)
    return invitation, new.plaintext


def revoke(session: Session, actor: Actor, org_id: str, invitation_id: str) -> Invitation:
    """Revoke a pending invitation: its link stops working and its undelivered mail is cancelled.

    One past its time is recorded as expired instead, by `actor` (and returned as such, no error,
    so that the expiry is kept); an accepted, declined or revoked one is a conflict.
    """
    invitation = _managed(session, actor, org_id, invitation_id)
    if status_now(invitation) == InvitationStatus.EXPIRED and invitation.status == InvitationStatus.PENDING:
        if not expire(session, invitation, actor):
            raise _changed_meanwhile(session, invitation, Conflict, "invitation_id")
        return invitation
    if invitation.status != InvitationStatus.PENDING:
        raise Conflict(f"this invitation is {invitation.status}", field="invitation_id",
                       invitation_status=invitation.status)
    if not _settle(session, invitation, status=InvitationStatus.REVOKED):
        raise _changed_meanwhile(session, invitation, Conflict, "invitation_id")
    cancelled = outbox.cancel(session, invitation.id)
    record(session, actor, Action.INVITATION_REVOKED, _target(invitation),
           {"status": {"before": InvitationStatus.PENDING, "after": InvitationStatus.REVOKED},
            "mails_cancelled": cancelled}, org_id=org_id)
    return invitation


def _inviter_team(session: Session, actor: Actor) -> str | None:
    if actor.type != "api_key":
        return None
    key = session.get(ApiKey, actor.id)
    return key.team_id if key else None


def _by_token(session: Session, token: str) -> Invitation:
    prefix = tokens.split_prefix(token or "")
    invitation = session.scalars(select(Invitation).where(Invitation.prefix == prefix)).one_or_none() \
        if prefix else None
    if invitation is None or not tokens.matches(token, invitation.secret_hash):
        raise Unauthenticated("invalid invitation link")
    return invitation


def _pending(session: Session, token: str) -> Invitation:
    """Return the pending, unexpired invitation behind a link token."""
    invitation = _by_token(session, token)
    status = status_now(invitation)
    if status != InvitationStatus.PENDING:
        raise InvalidValue(f"this invitation is {status}", field="token", invitation_status=status)
    return invitation


def check_pending(session: Session, token: str) -> Invitation:
    """Return the pending, unexpired invitation of the link `token`, or raise (reads only)."""
    return _pending(session, token)


def link_holder(session: Session, token: str, in_request: Callable[[Actor], Actor] | None = None) -> Actor:
    """Return the audit actor of whoever holds the link `token`, recording the invitation's expiry
    first, as theirs, when its time is up. `in_request` gives that actor the request's context.

    Callers run this in its own transaction before accepting or declining, so that the expiry
    is recorded even though the acceptance that follows is refused.
    """
    invitation = _by_token(session, token)
    holder = _invitee(invitation) if in_request is None else in_request(_invitee(invitation))
    if invitation.status == InvitationStatus.PENDING and invitation.expires_at <= clock.now():
        expire(session, invitation, holder)
    return holder


def expire(session: Session, invitation: Invitation, actor: Actor, reason: str = "time") -> bool:
    """Mark a pending invitation expired and cancel its undelivered mail, audited as `actor`'s
    (whoever found or made it so): its time is up, or (`reason`) its team or org was deleted, and
    no mail of it may go out after that. False, and nothing recorded, when another transaction
    settled it since it was read (accepted, revoked, resent, expired)."""
    if not _settle(session, invitation, status=InvitationStatus.EXPIRED):
        return False
    cancelled = outbox.cancel(session, invitation.id)
    record(session, actor, Action.INVITATION_EXPIRED, _target(invitation),
           {"status": {"before": InvitationStatus.PENDING, "after": InvitationStatus.EXPIRED}, "reason": reason,
            "mails_cancelled": cancelled}, org_id=invitation.org_id)
    return True


def _settle(session: Session, invitation: Invitation, **values: object) -> bool:
    """Write `values` to the invitation only if it is still as this transaction read it (its status
    and its link), in one UPDATE that compares and swaps; tell whether it did.

    Accepting, declining, revoking, resending and expiring each read the invitation, check it, and
    then change it; on PostgreSQL (READ COMMITTED) another of them may commit in between (an
    acceptance waits for the org's seat lock meanwhile). Without the comparison the later one would
    overwrite the earlier: a revoked invitation accepted, a member made from it. With it, one wins
    whole and the other is refused and rolled back. No lock is taken before the write, so the only
    row lock here comes after the org lock an acceptance takes, in the order deleting an org takes them.
    """
    result = session.execute(
        update(Invitation).where(Invitation.id == invitation.id, Invitation.status == invitation.status,
                                 Invitation.secret_hash == invitation.secret_hash).values(**values)
        .execution_options(synchronize_session=False))
    if not getattr(result, "rowcount", 0):
        return False
    for name, value in values.items():
        set_committed_value(invitation, name, value)
    return True


def _changed_meanwhile(session: Session, invitation: Invitation, error: type[DomainError], field: str) -> DomainError:
    """The refusal of a change that lost the race `_settle` decides, saying what the invitation is now."""
    status = session.scalar(select(Invitation.status).where(Invitation.id == invitation.id))
    if status == InvitationStatus.PENDING:
        return error("this invitation was sent again with a new link meanwhile", field=field,
                     invitation_status=status)
    return error(f"this invitation was {status} meanwhile", field=field, invitation_status=status)


def _invitee(invitation: Invitation) -> Actor:
    return Actor("system", f"invitation:{invitation.id}", f"invitee {invitation.email}")


def invitee(session: Session, token: str) -> Actor:
    """Return the audit actor of whoever holds the link `token`."""
    return _invitee(_by_token(session, token))


def accept(session: Session, actor: Actor, token: str) -> User:
    """Accept an invitation: the invitee becomes a member with its role and team, taking a seat."""
    invitation = _pending(session, token)
    # The org's lock first, then the invitation as committed: a deletion of its team or org that
    # committed while this waited has expired it (and its team's row is gone: no grant may name it).
    seats.lock_org(session, invitation.org_id)
    if session.execute(select(Invitation.status, Invitation.secret_hash).where(Invitation.id == invitation.id)).one() \
            != (invitation.status, invitation.secret_hash):
        raise _changed_meanwhile(session, invitation, InvalidValue, "token")
    _ensure_inviter_may_still_invite(session, invitation)
    _ensure_not_a_member(session, invitation.org_id, invitation.email)  # the IdP may have made them one since
    user = users.provision_user(session, actor, invitation.org_id, user_name=invitation.email,
                                email=invitation.email, role=invitation.role, team_id=invitation.team_id,
                                source=GrantSource.INVITATION)
    if not _settle(session, invitation, status=InvitationStatus.ACCEPTED):  # after the org lock: see _settle
        raise _changed_meanwhile(session, invitation, InvalidValue, "token")
    record(session, actor, Action.INVITATION_ACCEPTED, _target(invitation),
           {"status": {"before": InvitationStatus.PENDING, "after": InvitationStatus.ACCEPTED}, "user_id": user.id},
           org_id=invitation.org_id)
    return user


def _ensure_not_a_member(session: Session, org_id: str, email: str) -> None:
    """Refuse to invite (or add by invitation) an address a live member has as userName or email:
    a second account for the same person, with a seat of its own, that no IdP deprovisioning reaches."""
    if find_by_address(session, org_id, email) is not None:
        raise Conflict(f"{email} is already a member", field="email")


def _ensure_inviter_may_still_invite(session: Session, invitation: Invitation) -> None:
    """Refuse an invitation whose sender may no longer invite at its role: removed, deactivated or
    demoted since (directly, or as the holder of the key it was sent with). Its link must not give
    the org a member that nobody now in it may add. The operator's tools (a system actor) sent it
    on nobody's role, so theirs stand."""
    sender, cap = session.get(User, invitation.invited_by), None
    if sender is None:
        key = session.get(ApiKey, invitation.invited_by)
        if key is None:
            return  # the operator's: a system actor, on nobody's role
        sender = session.get(User, key.user_id) if key.user_id is not None else None
        cap = key.role_cap  # a key made for its holder by someone else acts at most at their role then
    role = org_role(session, sender.id) if sender is not None and sender.org_id == invitation.org_id \
        and sender.active and sender.deleted_at is None else None
    role = None if role is None else capped(role, cap)
    as_sender = Actor("user", sender.id if sender else "", "", org_id=invitation.org_id, role=role)
    if role is None or refusal(as_sender, "owners.manage" if invitation.role == Role.OWNER else "members.manage",
                               org_id=invitation.org_id) is not None:
        raise Conflict("whoever sent this invitation may no longer invite at its role; ask an owner or an admin "
                       "of the org for a new one", field="token")


def decline(session: Session, actor: Actor, token: str) -> None:
    """Decline an invitation; its link stops working."""
    invitation = _pending(session, token)
    if not _settle(session, invitation, status=InvitationStatus.DECLINED):
        raise _changed_meanwhile(session, invitation, InvalidValue, "token")
    record(session, actor, Action.INVITATION_DECLINED, _target(invitation),
           {"status": {"before": InvitationStatus.PENDING, "after": InvitationStatus.DECLINED}},
           org_id=invitation.org_id)


def expire_due(session: Session, org_id: str, actor: Actor) -> int:
    """Mark every pending invitation of the org whose time is up as expired; return how many.
    `actor` is who does it (the operators' cron)."""
    due = list(session.scalars(select(Invitation).where(
        Invitation.org_id == org_id, Invitation.status == InvitationStatus.PENDING,
        Invitation.expires_at <= clock.now())))
    return sum(expire(session, invitation, actor) for invitation in due)


def get_invitation(session: Session, org_id: str, invitation_id: str) -> Invitation:
    """Return an invitation of the org, or raise NotFound."""
    invitation = session.get(Invitation, invitation_id)
    if invitation is None or invitation.org_id != org_id:
        raise NotFound(f"no invitation {invitation_id!r} in this org")
    return invitation
