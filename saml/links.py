"""One-time sign-in links (`identity login-link`), and the "require SSO" rule they obey.

When an org requires SSO, members sign in only through its IdP; owners keep this link as a
break-glass sign-in (the IdP may be down or misconfigured), and its every use is audited as such.
The link's token is shown once; only its SHA-256 is kept; it is used up by the first sign-in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from identity import outbox, sessions, users
from identity.actions import Action
from identity.errors import DomainError, NotFound, Unauthenticated
from identity.lookups import has_address, user_target
from identity.models import Org, User
from identity.names import name_key
from identity.roles import authorize
from identity.vocabulary import Role, SessionMethod
from saml import device_cookies
from saml.models import SignInLink, SignInRequest

LINK_TTL = dt.timedelta(minutes=15)
LINK_PATH = "/login/link/"
REQUEST_WINDOW = dt.timedelta(minutes=15)  # rate limits of sign-in links asked for by email count this long


class SsoRequired(DomainError):
    """The org lets members sign in only through its IdP."""

    code = "sso_required"


class LinkInvalid(DomainError):
    """The sign-in link is unknown, used, expired, or its user can no longer sign in."""

    code = "link_invalid"


class LinkOtherBrowser(LinkInvalid):
    """The link was asked for by email from another browser (its cookie is missing or another's)."""

    code = "link_other_browser"


class TooManyRequests(DomainError):
    """Too many sign-in links were asked for this address or from this client in REQUEST_WINDOW."""

    code = "too_many_sign_in_requests"


@dataclass(frozen=True)
class Limits:
    """How many sign-in links may be asked for by email in REQUEST_WINDOW.

    `per_address`: for one address from one client address. Counted over every client, a stranger's
    four asks locked the owner out of her break-glass sign-in from her own machine; now a stranger
    uses up only his own share. `per_client`: from one client address, whatever the addresses (no
    mail bombing of many from one machine). `per_address_all_clients`: for one address from all
    clients together, higher: the one bound on mail to one address from many client addresses (each
    has its own `per_address`). Past it the address is refused to anonymous browsers only: a browser
    that has signed in as a member the ask would mail (its device cookie, saml.device_cookies) is
    counted in a bucket of its own (`_bucket`), under the same three limits, which no stranger can
    fill, and mails only the members its cookie names (`_ask`).
    """

    per_address: int = 3
    per_client: int = 20
    per_address_all_clients: int = 30


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_may_sign_in_without_sso(session: Session, org: Org, user: User) -> bool:
    """Refuse a non-IdP sign-in for a non-owner when the org requires SSO; return True for break-glass."""
    if not org.require_sso:
        return False
    if users.org_role(session, user.id) != Role.OWNER:
        raise SsoRequired("this organization requires single sign-on through its identity provider",
                          org_id=org.id, user_id=user.id)
    return True


def issue_sign_in_link(session: Session, actor: Actor, org_id: str, email: str) -> str:
    """Make a one-time sign-in link token for the org's live member with this email or userName."""
    authorize(actor, "member.sign_in_link", org_id=org_id)
    org = session.get(Org, org_id)
    if org is None:
        raise NotFound(f"no org {org_id!r}", org_id=org_id)
    user = _live_member(session, org_id, email)
    if user is None:
        raise NotFound(f"no active member {email!r} in this org", email=email)
    # A link signs in as its member: only one who outranks them may make it (DESIGN 3.2).
    authorize(actor, "member.sign_in_link", org_id=org_id, target_role=users.org_role(session, user.id))
    break_glass = ensure_may_sign_in_without_sso(session, org, user)
    token = secrets.token_urlsafe(32)
    now = clock.now()
    session.execute(delete(SignInLink).where(SignInLink.expires_at <= now))  # rare: issued by hand
    session.add(SignInLink(id=_digest(token), org_id=org_id, user_id=user.id, created_at=now,
                           expires_at=now + LINK_TTL))
    record(session, actor, Action.SSO_LOGIN_LINK_ISSUED, user_target(user),
           {"expires_in_seconds": int(LINK_TTL.total_seconds()), "break_glass": break_glass}, org_id=org_id)
    return token


def _live_member(session: Session, org_id: str, email: str) -> User | None:
    """The org's active member whose userName `email` is, else one who shows it as an address."""
    return session.scalars(select(User).where(
        User.org_id == org_id, User.deleted_at.is_(None), User.active.is_(True), has_address(email, org_id))
        .order_by((User.user_name_key == name_key(email.strip())).desc(), User.created_at, User.id).limit(1)).first()


def device_members(user: User) -> list[device_cookies.Member]:
    """Whom a browser that signed in as `user` gets a device cookie for: the member, if their userName
    or email is an address to ask with (none otherwise: such a member never gets a link by email)."""
    has_address = "@" in (user.email or "") or "@" in user.user_name
    return [device_cookies.Member(user.org_id, user.id)] if has_address else []


@dataclass(frozen=True)
class _Recipient:
    """A member an ask for a link by email would mail, in the org asked."""

    org: Org
    user: User
    break_glass: bool


@dataclass(frozen=True)
class _Ask:
    """Whom an ask for a link by email mails, and under which device it is counted (`_ask`)."""

    recipients: Sequence[_Recipient]
    device: str | None  # the device of a cookie that names every one of `recipients`; None: anonymous


def _ask(device: device_cookies.Presented, recipients: Sequence[_Recipient]) -> _Ask:
    """The members an ask mails: from a browser whose device cookie names at least one of the members
    it would mail, those only, counted in that device's bucket; from any other, all, counted as anonymous.

    The cookie names members, not addresses: another org's IdP can sign its owner in as a member of
    her own org with the victim's address, and her cookie must not count for the victim's member.
    Those named only, not every one: `/` mails each org where the address is a member, and a cookie
    for the rival org's member would otherwise carry the victim's link past the ceiling; asking that
    every member be named instead let the rival's JIT member turn the victim's own browser anonymous
    there, where a stranger's filled ceiling locked her out. Every recipient is checked (no short cut
    at the first named), and an address nobody may be mailed at has none: counted as anonymous, with
    the same answer (request_sign_in_links).
    """
    now = clock.now()
    found = [(r, device.device_for([device_cookies.Member(r.org.id, r.user.id)], now)) for r in recipients]
    named = [(recipient, known) for recipient, known in found if known is not None]
    return _Ask([recipient for recipient, _ in named], named[0][1]) if named else _Ask(recipients, None)


def _bucket(email: str, ask: _Ask) -> str:
    """The key an ask for `email` is counted under (SignInRequest.address_hash): the address's own,
    shared by every anonymous browser; or, from a browser whose device cookie names the members the
    ask mails (`_ask`), that device's for this address. OWASP's device cookies: a stranger's asks from
    many client addresses fill the address's bucket, never the owner's browser's. No member to mail
    (an unknown address or org) or a forged, expired or malformed cookie: the address's bucket, as
    for a stranger, so that the answer tells nothing.
    """
    key = name_key(email.strip())
    return _digest(key) if ask.device is None else _digest(f"device\x00{ask.device}\x00{key}")


def _count_request(session: Session, address: str, client_address: str, limits: Limits) -> None:
    """Count this request, known address or not, under its bucket (`_bucket`), and refuse it past any
    of the limits (Limits; kept in the database, so the limits hold across processes)."""
    now = clock.now()
    session.execute(delete(SignInRequest).where(SignInRequest.created_at <= now - REQUEST_WINDOW))
    session.add(SignInRequest(address_hash=address, client_address=client_address, created_at=now))
    session.flush()
    since = now - REQUEST_WINDOW
    by_address, by_client = SignInRequest.address_hash == address, SignInRequest.client_address == client_address
    for matches, limit in ((and_(by_address, by_client), limits.per_address), (by_client, limits.per_client),
                           (by_address, limits.per_address_all_clients)):
        seen = session.scalar(select(func.count()).select_from(SignInRequest).where(
            matches, SignInRequest.created_at > since)) or 0
        if seen > limit:
            raise TooManyRequests("too many sign-in links were asked for; wait a few minutes")


def request_sign_in_links(session: Session, actor: Actor, org_slugs: Sequence[str], email: str, *, browser: str,
                          client_address: str, base_url: str, limits: Limits = Limits(),
                          device: device_cookies.Presented = device_cookies.NONE) -> list[str]:
    """Queue a one-time sign-in link by mail in each org of `org_slugs` where this address is a live
    member, bound to `browser` (a cookie's value); return the mails' ids (none when nobody gets one).

    Whoever asks learns nothing from this: an unknown org or address, or a member whom the org's
    SSO requirement keeps out, is looked up and counted against the limits the same way and gets no
    mail. The ask is counted once, under the address's key alone: `/` looks up the orgs of a typed
    address by membership, so a count by org (or one per org) would tell a member from a stranger.
    `device`: the browser's device cookie, which counts the ask in that device's own bucket when it
    names one of the members who would get the mails, and then mails only those it names (`_ask`:
    another org's member with the same address, whom it does not name, gets no mail by this ask, and
    does not make the member's own browser anonymous). Such an ask's mails count against each
    org's cap on mails to one address (identity.outbox.ensure_under_cap), and past it get no mail,
    with the same answer; an anonymous browser's are outside that cap (the address's own ceiling,
    Limits.per_address_all_clients, bounds them), so that no stranger can fill it for the member.
    """
    recipients = [r for r in (_recipient(session, slug, email) for slug in org_slugs) if r is not None]
    ask = _ask(device, recipients)
    _count_request(session, _bucket(email, ask), client_address, limits)
    capped = ask.device is not None
    queued = (_queue_link(session, actor, recipient, browser, base_url, capped=capped)
              for recipient in ask.recipients)
    return [mail_id for mail_id in queued if mail_id is not None]


def _recipient(session: Session, org_slug: str, email: str) -> _Recipient | None:
    """The org's live member with this address, who may get a link by mail; None when nobody may."""
    slug = org_slug.strip().lower()
    org = session.scalars(select(Org).where(Org.slug == slug)).first() if slug else None
    user = _live_member(session, org.id, email) if org is not None else None
    if org is None or user is None or "@" not in (user.email or user.user_name):
        return None
    try:
        return _Recipient(org, user, ensure_may_sign_in_without_sso(session, org, user))
    except SsoRequired:
        return None


def _queue_link(session: Session, actor: Actor, recipient: _Recipient, browser: str, base_url: str, *,
                capped: bool) -> str | None:
    """Queue the recipient's link by mail, and record it; None, and no link, past the org's cap on
    mails to the address (`capped`: identity.outbox.queue) or when the member's email is not one plain
    address (an IdP's list or 'Name <addr>': outbox.NotOneAddress), which is recorded instead."""
    org, user, break_glass = recipient.org, recipient.user, recipient.break_glass
    token, now = secrets.token_urlsafe(32), clock.now()
    link = f"{base_url.rstrip('/')}{LINK_PATH}{token}"
    body = (f"Sign in to {org.name} with this link. It works once, for {int(LINK_TTL.total_seconds()) // 60} "
            f"minutes, in the browser where you asked for it:\n\n{link}\n\n"
            "If you did not ask for it, ignore this mail: nobody can use it from another browser.\n")
    try:
        mail = outbox.queue(session, org.id, kind="sign_in_link", ref=user_target(user),
                            recipient=user.email or user.user_name, subject=f"Sign in to {org.name}", body=body,
                            link=link, expires_at=now + LINK_TTL, capped=capped)
    except (outbox.MailCapReached, outbox.NotOneAddress) as refused:
        record(session, actor, Action.MAIL_CAPPED, user_target(user),
               {"kind": "sign_in_link", "reason": refused.message}, org_id=org.id, outcome="refused")
        return None
    session.add(SignInLink(id=_digest(token), org_id=org.id, user_id=user.id, created_at=now,
                           expires_at=now + LINK_TTL, browser_hash=_digest(browser)))
    record(session, actor, Action.SSO_LOGIN_LINK_ISSUED, user_target(user),
           {"expires_in_seconds": int(LINK_TTL.total_seconds()), "break_glass": break_glass,
            "requested_by": "email", "mail_id": mail.id}, org_id=org.id)
    return mail.id


@dataclass(frozen=True)
class LinkSignIn:
    """A sign-in through a link: the user, the session token for the cookie, and whether it broke glass."""

    user: User
    token: str
    break_glass: bool


def link_owner(session: Session, token: str) -> SignInLink | None:
    """Return the live link of `token` (unused, unexpired), without using it up."""
    link = session.get(SignInLink, _digest(token))
    return link if link is not None and link.expires_at > clock.now() else None


def sign_in_with_link(session: Session, actor: Actor, token: str, *, lifetime: sessions.Lifetime,
                      browser: str | None = None) -> LinkSignIn:
    """Use up a sign-in link and start a session; the SSO rule is checked again at this moment.

    A link asked for by email works only in the browser that asked (`browser`: its cookie); from
    another it is refused and stays unused.
    """
    link = session.scalars(select(SignInLink).where(SignInLink.id == _digest(token)).with_for_update()).one_or_none()
    if link is None:
        raise LinkInvalid("this sign-in link is unknown or was already used")
    if link.browser_hash is not None and (not browser or not secrets.compare_digest(
            _digest(browser), link.browser_hash)):
        raise LinkOtherBrowser("this sign-in link was asked for in another browser",
                               org_id=link.org_id, user_id=link.user_id)
    session.delete(link)
    session.flush()
    user = session.get(User, link.user_id)
    if link.expires_at <= clock.now() or user is None or not user.active or user.deleted_at is not None:
        raise LinkInvalid("this sign-in link has expired or its account cannot sign in",
                          org_id=link.org_id, user_id=link.user_id)
    break_glass = ensure_may_sign_in_without_sso(session, session.get_one(Org, link.org_id), user)
    method = SessionMethod.BREAK_GLASS if break_glass else SessionMethod.LOGIN_LINK
    try:  # the member's row read again, locked: a deactivation or deletion under way is waited for
        token_out = sessions.create_session(session, user, method=method, lifetime=lifetime)
    except Unauthenticated:
        raise LinkInvalid("this sign-in link has expired or its account cannot sign in",
                          org_id=link.org_id, user_id=link.user_id) from None
    user_actor = Actor("user", user.id, user.user_name, org_id=user.org_id, request_id=actor.request_id,
                       ip=actor.ip, user_agent=actor.user_agent)
    record(session, user_actor, Action.SSO_LOGIN_SUCCEEDED, user_target(user),
           {"flow": "login_link", "break_glass": break_glass}, org_id=user.org_id)
    if break_glass:  # its own action, so that an alert on it needs no filter on event contents
        record(session, user_actor, Action.SSO_BREAK_GLASS_USED, user_target(user), {"flow": "login_link"},
               org_id=user.org_id)
    return LinkSignIn(user, token_out, break_glass)
