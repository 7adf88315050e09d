"""The mail outbox: every mail the service sends (invitations, sign-in links) is a row first.

A mail is queued in the transaction of the change that makes it (an invitation, a sign-in link),
so that it exists exactly when that change does. identity.mail delivers it afterwards over SMTP
when SMTP_URL is set; until then, or when delivery fails, it stays here (listed to admins, retried
by `identity mail retry` and by the next delivery). A mail's link is a live credential: it is kept
only while the mail is undelivered and cleared once it is sent, cancelled or expired, and never
written to the audit log.

Every mail goes to one plain address (`one_address`). One cap holds an org's invitations and its
device-known sign-in links to one address (`MAIL_CAP` in `CAP_WINDOW`, the address compared by
identity.names.name_key): an admin resending an invitation (or revoking and inviting again) as often
as she likes, or another org's owner asking for "Sign in to <her org>" links for a member her IdP
made with the victim's address, each from a new device (saml.links), would otherwise flood that
mailbox through our SMTP server's reputation. Anonymous asks are outside it: the address's own
ceiling (saml.links.Limits.per_address_all_clients) bounds them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
from dataclasses import dataclass

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity.actions import Action
from identity.errors import DomainError, InvalidValue, NotFound
from identity.models import Invitation, OutboxMail
from identity.names import checked_address, name_key
from identity.roles import authorize, refusal
from identity.vocabulary import Role

PENDING, FAILED, SENT, CANCELLED, EXPIRED = "pending", "failed", "sent", "cancelled", "expired"
STATUSES = (PENDING, FAILED, SENT, CANCELLED, EXPIRED)
UNDELIVERED = (PENDING, FAILED)
MAX_ATTEMPTS = 10
CLAIM_FOR = dt.timedelta(minutes=2)


SUBJECT_LENGTH = 200  # outbox_mails.subject
# At most MAIL_CAP mails from one org to one address in any CAP_WINDOW. An admin fixing a mistake
# resends a few times a day; a member asks for a sign-in link a few times a day; ten a day leaves
# both room and bounds a flood to ten a day per org (Gitter capped email invitations at 10 a day).
MAIL_CAP = 10
CAP_WINDOW = dt.timedelta(hours=24)


class MailCapReached(DomainError):
    """The org has sent MAIL_CAP mails to this address in CAP_WINDOW; `retry_after_seconds`: until one more may go."""

    code = "mail_cap_reached"


class NotOneAddress(InvalidValue):
    """The recipient is not one plain address (`identity.names.checked_address`): no mail goes.

    An IdP's email is the IdP's to keep (checked_email only): it may be a list ("a@x, b@y") or carry
    a display name ("Owner <a@x>"), which smtplib would deliver to every mailbox it names, each
    spelling under a cap of its own."""

    code = "mail_recipient_not_one_address"


def queue(session: Session, org_id: str, *, kind: str, ref: Target, recipient: str, subject: str, body: str,
          link: str, expires_at: dt.datetime, capped: bool = True) -> OutboxMail:
    """Add a mail to the outbox; the caller's own audit event names it (no event of its own).

    The mail goes to one address, `recipient` stripped (`one_address`), and nowhere else: refused
    (NotOneAddress, nothing added) when the recipient is not one plain address. Refused
    (MailCapReached, nothing added) past the org's cap on mails to the address (`ensure_under_cap`).
    `capped=False`: a mail outside the cap, neither counted nor refused: a sign-in link asked for
    by an anonymous browser, which the address's own ceiling bounds already (saml.links.Limits);
    counted, a stranger's asks would fill the cap and silence the member's own browser's links.
    """
    address = one_address(recipient)
    key = name_key(address) if capped else None
    if key is not None:
        ensure_under_cap(session, org_id, address)
    mail = OutboxMail(id=str(uuid.uuid4()), org_id=org_id, kind=kind, ref_type=ref.type, ref_id=ref.id,
                      recipient=address, cap_key=key, subject=_fitted_subject(subject), body=body, link=link,
                      status=PENDING, attempts=0, created_at=clock.now(), expires_at=expires_at)
    session.add(mail)
    return mail


def one_address(recipient: str) -> str:
    """Return the one plain address `recipient` is, stripped, or raise NotOneAddress: the To header
    names this address alone, and the cap counts it under one key whatever its spelling."""
    try:
        return checked_address(recipient, "recipient")
    except InvalidValue as refused:
        raise NotOneAddress(refused.message, field="recipient") from None


def ensure_under_cap(session: Session, org_id: str, recipient: str) -> None:
    """Refuse (MailCapReached) one more mail from the org to `recipient` when MAIL_CAP are in CAP_WINDOW.

    Only this org's mails count: a refusal must not tell an admin that another org mailed the
    address. Every status counts (a cancelled mail may have been on its way when its invitation
    was resent). The read is a range of the index (org_id, cap_key, created_at), MAIL_CAP rows at
    most: the MAIL_CAP-th newest mail in the window, whose leaving it frees the next one. Two
    mails to one address count one after the other (`_lock_cap`): asks for sign-in links hold no
    lock of the org's, and k in flight together would otherwise all pass, k - 1 over the cap.
    """
    key = name_key(recipient)
    _lock_cap(session, org_id, key)
    now = clock.now()
    nth = session.scalar(select(OutboxMail.created_at).where(
        OutboxMail.org_id == org_id, OutboxMail.cap_key == key,
        OutboxMail.created_at > now - CAP_WINDOW).order_by(OutboxMail.created_at.desc())
        .offset(MAIL_CAP - 1).limit(1))
    if nth is None:
        return
    wait = max(1, math.ceil((nth + CAP_WINDOW - now).total_seconds()))
    raise MailCapReached(f"{recipient} has been sent {MAIL_CAP} mails from this organization in the last "
                         f"{int(CAP_WINDOW.total_seconds() // 3600)} hours; try again in {_duration(wait)}",
                         field="email", org_id=org_id, retry_after_seconds=wait)


def _lock_cap(session: Session, org_id: str, cap_key: str) -> None:
    """Hold the org's cap on `cap_key` until the transaction ends, so that the next mail to the address
    counts this one: on PostgreSQL an advisory lock on a 64-bit hash of (org, key) (a collision only
    makes two addresses wait for each other); SQLite's writers are one at a time already."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"mail-cap:{org_id}:{cap_key}".encode()).digest()
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": int.from_bytes(digest[:8], "big", signed=True)})


def _duration(seconds: int) -> str:
    hours, minutes = seconds // 3600, -(-(seconds % 3600) // 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _fitted_subject(subject: str) -> str:
    """Return `subject`, cut to SUBJECT_LENGTH with an ellipsis when longer.

    Subjects name the org ("Invitation to <name>", "Sign in to <name>"), and an org's name may be
    as long as the column: cut here, in the one place every mail is queued, it is a shorter
    subject rather than every mail of that org failing (a 500 on PostgreSQL)."""
    if len(subject) <= SUBJECT_LENGTH:
        return subject
    return subject[:SUBJECT_LENGTH - 1].rstrip() + "\u2026"


def cancel(session: Session, ref_id: str) -> int:
    """Cancel the undelivered mails about `ref_id` (a revoked or resent invitation); return how many."""
    result = session.execute(update(OutboxMail).where(OutboxMail.ref_id == ref_id,
                                                      OutboxMail.status.in_(UNDELIVERED))
                             .values(status=CANCELLED, body="", link=None))
    return int(getattr(result, "rowcount", 0) or 0)


def _target(mail: OutboxMail) -> Target:
    return Target(mail.ref_type, mail.ref_id, mail.recipient)


def _changes(mail: OutboxMail, **more: object) -> dict[str, object]:
    return {"mail_id": mail.id, "kind": mail.kind, "to": mail.recipient, "attempts": mail.attempts, **more}


def undelivered_ids(session: Session, *, org_id: str | None = None, limit: int = 50) -> list[str]:
    """Return the oldest mails still to deliver (pending, or failed fewer than MAX_ATTEMPTS times)."""
    stmt = select(OutboxMail.id).where(OutboxMail.status.in_(UNDELIVERED), OutboxMail.attempts < MAX_ATTEMPTS)
    if org_id is not None:
        stmt = stmt.where(OutboxMail.org_id == org_id)
    return list(session.scalars(stmt.order_by(OutboxMail.created_at).limit(limit)))


def undelivered_for(session: Session, ref_id: str) -> str | None:
    """Return the id of the newest undelivered mail about `ref_id` (an invitation), if any."""
    return session.scalars(select(OutboxMail.id).where(OutboxMail.ref_id == ref_id,
                                                       OutboxMail.status.in_(UNDELIVERED))
                           .order_by(OutboxMail.created_at.desc()).limit(1)).first()


def status_of(session: Session, mail_id: str) -> str | None:
    """Return a mail's status (pending, failed, sent, ...), or None when there is no such mail."""
    return session.scalar(select(OutboxMail.status).where(OutboxMail.id == mail_id))


def claim(session: Session, mail_id: str) -> OutboxMail | None:
    """Claim an undelivered mail for one sender (compare and swap); None when another has it or it is done."""
    now = clock.now()
    result = session.execute(update(OutboxMail).where(
        OutboxMail.id == mail_id, OutboxMail.status.in_(UNDELIVERED),
        (OutboxMail.claimed_until.is_(None)) | (OutboxMail.claimed_until <= now)).values(claimed_until=now + CLAIM_FOR))
    if not getattr(result, "rowcount", 0):
        return None
    return session.get_one(OutboxMail, mail_id, populate_existing=True)


def record_sent(session: Session, actor: Actor, mail_id: str) -> None:
    """Mark a mail delivered (audited `mail.sent`) and forget its link."""
    mail = session.get_one(OutboxMail, mail_id)
    mail.attempts += 1
    mail.status, mail.sent_at, mail.claimed_until, mail.body, mail.link = SENT, clock.now(), None, "", None
    record(session, actor, Action.MAIL_SENT, _target(mail), _changes(mail), org_id=mail.org_id)


def record_failure(session: Session, actor: Actor, mail_id: str, error: str) -> None:
    """Mark a delivery failed (audited `mail.failed`); the mail stays in the outbox to be retried."""
    mail = session.get_one(OutboxMail, mail_id)
    mail.attempts += 1
    mail.status, mail.last_error, mail.claimed_until = FAILED, error[:300], None
    record(session, actor, Action.MAIL_FAILED, _target(mail), _changes(mail, error=error[:300]),
           org_id=mail.org_id, outcome="failure")


def record_expired(session: Session, actor: Actor, mail_id: str) -> None:
    """Drop an undelivered mail whose link has expired (audited `mail.expired`)."""
    mail = session.get_one(OutboxMail, mail_id)
    mail.status, mail.claimed_until, mail.body, mail.link = EXPIRED, None, "", None
    record(session, actor, Action.MAIL_EXPIRED, _target(mail), _changes(mail), org_id=mail.org_id)


@dataclass(frozen=True)
class MailEntry:
    """A mail as the outbox list shows it: an invitation's link while undelivered (admins may hand it
    over themselves; an owner invitation's only to owners), never a sign-in link."""

    id: str
    kind: str
    to: str
    subject: str
    status: str
    attempts: int
    last_error: str | None
    created: dt.datetime
    sent: dt.datetime | None
    link: str | None

    @classmethod
    def of(cls, mail: OutboxMail, *, shows_link: bool = True) -> MailEntry:
        link = mail.link if mail.kind == "invitation" and shows_link else None
        return cls(mail.id, mail.kind, mail.recipient, mail.subject, mail.status, mail.attempts, mail.last_error,
                   mail.created_at, mail.sent_at, link)


@dataclass(frozen=True)
class MailPage:
    mails: list[MailEntry]
    next: str | None


def list_outbox(session: Session, actor: Actor, org_id: str, *, status: str | None = None, limit: int = 100,
                 after: str = "") -> MailPage:
    """Return the org's mails, newest first, a keyset page (for those who manage members)."""
    authorize(actor, "members.manage", org_id=org_id)
    if status is not None and status not in STATUSES:
        raise InvalidValue(f"status must be one of {', '.join(STATUSES)}", field="status")
    stmt = select(OutboxMail).where(OutboxMail.org_id == org_id)
    if status is not None:
        stmt = stmt.where(OutboxMail.status == status)
    if after:
        last = session.get(OutboxMail, after)
        if last is None or last.org_id != org_id:
            raise NotFound("after must be the `next` of the previous page", field="after")
        stmt = stmt.where((OutboxMail.created_at < last.created_at)
                          | ((OutboxMail.created_at == last.created_at) & (OutboxMail.id < last.id)))
    found = list(session.scalars(stmt.order_by(OutboxMail.created_at.desc(), OutboxMail.id.desc()).limit(limit)))
    hidden = _owner_invitations(session, actor, org_id, found)
    return MailPage([MailEntry.of(m, shows_link=m.ref_id not in hidden) for m in found],
                    found[-1].id if len(found) == limit else None)


def _owner_invitations(session: Session, actor: Actor, org_id: str, mails: list[OutboxMail]) -> set[str]:
    """The owner invitations among `mails` whose links `actor` may not see: an invitation's link is a
    credential to answer it, and answering (or declining) an owner invitation is the owners' business
    (identity.invitations refuses admins its revocation and resending)."""
    if refusal(actor, "owners.manage", org_id=org_id) is None:
        return set()
    ids = [m.ref_id for m in mails if m.kind == "invitation" and m.ref_type == "invitation" and m.link]
    if not ids:
        return set()
    return set(session.scalars(select(Invitation.id).where(Invitation.id.in_(ids), Invitation.role == Role.OWNER)))
