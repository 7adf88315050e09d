"""Auto top-up (DESIGN.md 3.8): one pending request when a balance crosses its threshold, and its hook.

When a debit takes a team's balance below its auto top-up threshold, one request is written in
the debit's transaction, and the wallet remembers it (`pending_topup_id`): later debits add none
until a top-up brings the balance back to the threshold or pays the request (identity.wallets fulfils
it then), or a refund, adjustment, seat grant or change of the auto top-up withdraws it while
undelivered (`cancelled`). The request goes to the operator's payment hook, as the mail
outbox goes to SMTP (identity.outbox, identity.mail): claimed by one sender, POSTed outside any
transaction, marked delivered or failed in a transaction of its own, retried by
`identity billing topups deliver` up to MAX_ATTEMPTS, each retry after a backoff (`retry_after`).
Without a hook (`TOPUP_WEBHOOK_URL` unset) the requests stay pending and are listed to owners and
admins (and by the CLI): that is the outbox.

The POST body is JSON; `X-Identity-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
under `TOPUP_WEBHOOK_SECRET` lets the hook prove it came from us and is fresh.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from identity.actions import Action
from identity.config import topup_hook
from identity.db import Database
from identity.errors import Conflict, NotFound
from identity.lookups import get_team
from identity.models import Org, Team
from identity.paging import Window, within
from identity.roles import authorize
from identity.wallet_models import TopUpRequest, Wallet
from identity.wallets import (
    TOPUP_CANCELLED,
    UNDELIVERED_TOPUP,
    WalletRow,
    lock_wallet,
    new_id,
    team_target,
    withdraw_undelivered,
)

log = logging.getLogger("identity.topups")
PENDING, FAILED, DELIVERED, FULFILLED = "pending", "failed", "delivered", "fulfilled"
UNDELIVERED, CANCELLED = UNDELIVERED_TOPUP, TOPUP_CANCELLED
MAX_ATTEMPTS = 10
# After its n-th failed delivery a request waits 2^(n-1) minutes, at most MAX_BACKOFF: 1, 2, 4 ... 256
# minutes, then 6 hours; the tenth attempt comes some 8.5 hours after the first, so an outage of the
# hook shorter than that loses no request.
MAX_BACKOFF = dt.timedelta(hours=6)
REQUESTED = "identity.topup_requested"
CLAIM_FOR = dt.timedelta(minutes=2)
TIMEOUT_SECONDS = 10.0


def due(wallet: Wallet | WalletRow) -> bool:
    """Whether the wallet's auto top-up asks for a top-up now: below its threshold, and none pending."""
    threshold, top = wallet.auto_topup_threshold_micros, wallet.auto_topup_amount_micros
    return threshold is not None and top is not None and wallet.balance_micros < threshold \
        and not wallet.pending_topup_id


def request_if_due(session: Session, actor: Actor, wallet: Wallet | WalletRow) -> TopUpRequest | None:
    """Raise one top-up request when the (locked) wallet is below its threshold and none is pending."""
    if not due(wallet):
        return None
    threshold, top = wallet.auto_topup_threshold_micros, wallet.auto_topup_amount_micros
    assert threshold is not None and top is not None
    found = TopUpRequest(id=new_id(), org_id=wallet.org_id, team_id=wallet.team_id, amount_micros=top,
                         threshold_micros=threshold, balance_micros=wallet.balance_micros, status=PENDING,
                         attempts=0, created_at=clock.now())
    session.add(found)
    wallet.pending_topup_id = found.id
    session.info[REQUESTED] = True  # the caller may hand it to the hook once committed
    record(session, actor, Action.WALLET_TOPUP_REQUESTED, team_target(wallet.team_id),
           {"request_id": found.id, "amount_micros": top, "threshold_micros": threshold,
            "balance_micros": wallet.balance_micros}, org_id=wallet.org_id)
    return found


def list_requests(session: Session, actor: Actor, org_id: str, team_id: str,
                  window: Window | None = None) -> list[TopUpRequest]:
    """Return the team's top-up requests, newest first (for owners and admins): those of `window`
    (default: the first 100) and one more when there are more (identity.paging)."""
    authorize(actor, "billing.read", org_id=org_id)
    get_team(session, org_id, team_id)  # NotFound for another org's team
    stmt = select(TopUpRequest).where(TopUpRequest.org_id == org_id, TopUpRequest.team_id == team_id)
    return list(session.scalars(within(stmt, TopUpRequest.created_at, TopUpRequest.id, window or Window(100),
                                       newest_first=True)))


def requests_with_status(session: Session, status: str | None, limit: int = 1000) -> list[TopUpRequest]:
    """Return every org's top-up requests of `status` (None: all), oldest first: the operator's outbox."""
    stmt = select(TopUpRequest)
    if status is not None:
        stmt = stmt.where(TopUpRequest.status == status)
    return list(session.scalars(stmt.order_by(TopUpRequest.created_at).limit(limit)))


def retry_after(attempts: int) -> dt.timedelta:
    """How long a request waits after its `attempts`-th failed delivery (exponential, capped)."""
    return min(dt.timedelta(minutes=2 ** min(attempts - 1, 20)), MAX_BACKOFF)


def _due_now(now: dt.datetime) -> Any:
    """A request the hook should be asked for now: undelivered, retries left, its backoff over."""
    return (TopUpRequest.status.in_(UNDELIVERED) & (TopUpRequest.attempts < MAX_ATTEMPTS)
            & (TopUpRequest.next_attempt_at.is_(None) | (TopUpRequest.next_attempt_at <= now)))


def undelivered_ids(session: Session, limit: int = 50) -> list[str]:
    """The requests to hand to the payment hook now, oldest first; never a deleted org's or team's
    (a team's deletion cancels them; the join also leaves out those of teams deleted before it did)."""
    return list(session.scalars(select(TopUpRequest.id).join(Org, Org.id == TopUpRequest.org_id)
                                .join(Team, Team.id == TopUpRequest.team_id).where(
        _due_now(clock.now()), Org.deleted_at.is_(None))
        .order_by(TopUpRequest.created_at).limit(limit)))


def close_team_wallet(session: Session, actor: Actor, org_id: str, team_id: str) -> int:
    """Cancel the undelivered top-up requests of a team being deleted, each audited, and return its
    wallet's balance for the `team.deleted` event (0 when it never had a wallet: one is made and locked).

    No top-up can reach a deleted team's wallet, so the payment hook must not be asked to charge for
    it. Under the wallet's lock, as every change of its pending request is. The caller authorized the
    deletion; a request already delivered is the hook's now and stays as it is.
    """
    # Locked, made first when the team never had one: a top-up under way or to come then waits for
    # the deletion and finds the team gone (identity.wallets.lock_wallet), rather than make the wallet
    # and credit it before the team's row is deleted.
    wallet = lock_wallet(session, org_id, team_id).wallet
    withdraw_undelivered(session, actor, wallet, "team_deleted")
    wallet.pending_topup_id = None
    return wallet.balance_micros


def charging(session: Session, team_id: str) -> list[str]:
    """The team's top-up requests the payment hook holds, oldest first: delivered and not yet paid
    (the hook may be charging for them), or being delivered now (claimed by a sender: its POST may be
    in flight). Money the team's wallet is owed: their payment fulfils them, on the team's wallet only."""
    return list(session.scalars(select(TopUpRequest.id).where(TopUpRequest.team_id == team_id, _held())
                                .order_by(TopUpRequest.created_at)))


def teams_charging(session: Session, team_ids: list[str]) -> set[str]:
    """Which of the teams have a request the payment hook holds (`charging`'s rule), in one query for a
    page of teams: the console says why their Delete is not offered (identity.team_deletion refuses it)."""
    if not team_ids:
        return set()
    return set(session.scalars(select(TopUpRequest.team_id).where(TopUpRequest.team_id.in_(team_ids), _held())
                               .distinct()))


def _held() -> ColumnElement[bool]:
    """A request the hook holds: delivered and not yet paid, or being delivered now (claimed)."""
    now = clock.now()
    return (TopUpRequest.status == DELIVERED) | (
        TopUpRequest.status.in_(UNDELIVERED) & TopUpRequest.claimed_until.is_not(None)
        & (TopUpRequest.claimed_until > now))


def in_flight(request: TopUpRequest) -> bool:
    """Whether the request is being delivered now (claimed by a sender, its POST perhaps in flight):
    its outcome is not known yet, so it may not be cancelled (cancel_request; the console offers no form)."""
    return request.claimed_until is not None and request.claimed_until > clock.now()


def cancel_request(session: Session, actor: Actor, org_id: str, team_id: str, request_id: str) -> TopUpRequest:
    """Cancel one of the team's top-up requests not yet paid, the hook's included (owners: the wallet is
    theirs, DESIGN 3.2), audited (`wallet.topup_cancelled`, reason `owner_cancelled`); forget it as the
    wallet's pending request, so the next crossing of the threshold may raise one.

    For an owner who has stopped the charge at the payment provider, or who means to delete the team
    (identity.team_deletion refuses while the hook holds a request: its payment would find no team).
    A later payment naming it is still credited, once, while the team is there. One being delivered
    now (claimed, its POST in flight) is a Conflict: its outcome is not known yet."""
    authorize(actor, "wallets.manage", org_id=org_id)
    get_team(session, org_id, team_id)
    wallet = lock_wallet(session, org_id, team_id).wallet
    found = session.get(TopUpRequest, request_id) if isinstance(request_id, str) and len(request_id) <= 36 else None
    if found is None or found.team_id != team_id or found.org_id != org_id:
        raise NotFound(f"no top-up request {request_id!r} in team {team_id!r}", field="request_id")
    if found.status not in (*UNDELIVERED, DELIVERED):
        raise Conflict(f"the top-up request is {found.status}: only one not yet paid can be cancelled",
                       field="request_id", status=found.status)
    if in_flight(found):
        raise Conflict("the top-up request is being delivered to the payment hook now; try again in a few minutes",
                       field="request_id", status=found.status)
    before, found.status, found.claimed_until = found.status, CANCELLED, None
    if wallet.pending_topup_id == found.id:
        wallet.pending_topup_id = None
    record(session, actor, Action.WALLET_TOPUP_CANCELLED, team_target(team_id),
           {"request_id": found.id, "amount_micros": found.amount_micros, "reason": "owner_cancelled",
            "status": {"before": before, "after": CANCELLED}}, org_id=org_id)
    return found


def body_of(found: TopUpRequest) -> bytes:
    return json.dumps({"type": "wallet.topup_requested", "id": found.id, "org_id": found.org_id,
                       "team_id": found.team_id, "amount_micros": found.amount_micros,
                       "threshold_micros": found.threshold_micros, "balance_micros": found.balance_micros,
                       "created": found.created_at.isoformat()}, separators=(",", ":")).encode()


def signature(secret: str, body: bytes, at: int) -> str:
    """Return the X-Identity-Signature value: t=<at>,v1=HMAC-SHA256(secret, "<at>.<body>")."""
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


Poster = Callable[[str, bytes, dict[str, str]], None]


def http_post(url: str, body: bytes, headers: dict[str, str]) -> None:
    """POST to the hook; any answer but 2xx raises (urllib raises HTTPError for 4xx and 5xx)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS):  # noqa: S310 (the operator's own URL)
        pass


def configured(settings: Mapping[str, Any]) -> tuple[str, str] | None:
    """Return the hook's (url, secret) from the settings or environment, or None when there is none;
    a URL without its secret is a ValueError (identity.config.topup_hook: nothing is signed under "")."""
    return topup_hook(settings)


def deliver(db: Database, hook: tuple[str, str] | None, actor: Actor, *, post: Poster = http_post,
            limit: int = 20) -> dict[str, int]:
    """Hand the undelivered requests to the hook, each claimed by one sender; report how many went."""
    report = {"delivered": 0, "failed": 0}
    if hook is None:
        return report
    with db.reading() as session:
        ids = undelivered_ids(session, limit)
    for request_id in ids:
        with db.transaction() as session:
            found = _claim(session, request_id)
            body = body_of(found) if found else b""
        if found is None:
            continue
        headers = {"Content-Type": "application/json",
                   "X-Identity-Signature": signature(hook[1], body, int(time.time()))}
        try:
            post(hook[0], body, headers)
            outcome, error = DELIVERED, None
        except Exception as failure:  # any failure of the hook leaves the request to be retried
            outcome, error = FAILED, f"{type(failure).__name__}: {failure}"[:300]
            log.warning("top-up hook failed", extra={"topup_request_id": request_id, "error": type(failure).__name__})
        with db.transaction() as session:
            _mark(session, actor, request_id, outcome, error)
        report[outcome] += 1
    return report


def _claim(session: Session, request_id: str) -> TopUpRequest | None:
    now = clock.now()
    result = session.execute(update(TopUpRequest).where(
        TopUpRequest.id == request_id, _due_now(now),
        (TopUpRequest.claimed_until.is_(None)) | (TopUpRequest.claimed_until <= now))
        .values(claimed_until=now + CLAIM_FOR))
    if not getattr(result, "rowcount", 0):
        return None
    return session.get_one(TopUpRequest, request_id, populate_existing=True)


def _mark(session: Session, actor: Actor, request_id: str, outcome: str, error: str | None) -> None:
    found = session.get_one(TopUpRequest, request_id)
    wallet = _wallet_of(session, found) if outcome == FAILED else None  # locked first, as every writer does
    found.attempts += 1
    found.claimed_until, found.last_error = None, error
    if found.status in UNDELIVERED:  # a top-up may have fulfilled it meanwhile
        found.status = outcome
    changes: dict[str, Any] = {"request_id": request_id, "attempts": found.attempts, "error": error}
    if outcome == DELIVERED:
        found.delivered_at = clock.now()
    elif found.attempts < MAX_ATTEMPTS:
        found.next_attempt_at = clock.now() + retry_after(found.attempts)
        changes["next_attempt_at"] = found.next_attempt_at.isoformat()
    record(session, actor, Action.WALLET_TOPUP_DELIVERED if outcome == DELIVERED else Action.WALLET_TOPUP_FAILED,
           team_target(found.team_id), changes, org_id=found.org_id,
           outcome="success" if outcome == DELIVERED else "failure")
    if wallet is not None and found.status == FAILED and not _wanted(wallet, found):
        _withdraw_unwanted(session, actor, wallet, found.id)


def _wallet_of(session: Session, found: TopUpRequest) -> Wallet | None:
    """The request's wallet, locked (None when its team is gone: nothing then asks for it again)."""
    try:
        return lock_wallet(session, found.org_id, found.team_id).wallet
    except NotFound:
        return None


def _wanted(wallet: Wallet, found: TopUpRequest) -> bool:
    """Whether the wallet's auto top-up still asks for this request: its pending one, the same threshold
    and amount, the balance still below it (what withdraw_undelivered's callers would have left)."""
    return wallet.pending_topup_id == found.id and wallet.balance_micros < (wallet.auto_topup_threshold_micros or 0) \
        and (wallet.auto_topup_threshold_micros, wallet.auto_topup_amount_micros) == (found.threshold_micros,
                                                                                      found.amount_micros)


def _withdraw_unwanted(session: Session, actor: Actor, wallet: Wallet, request_id: str) -> None:
    """A request whose POST failed, withdrawal of which was skipped while it was in flight (auto top-up
    turned off or changed, the balance restored meanwhile): withdrawn now, not retried for the owner
    who no longer wants it; a changed auto top-up still due raises its own (configure_wallet's rule)."""
    session.flush()
    withdraw_undelivered(session, actor, wallet, "withdrawn_while_delivered", only=request_id)
    request_if_due(session, actor, wallet)
