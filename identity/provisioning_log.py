"""What the IdP sent lately, for the IT admin who connects Okta or Entra ID (issue 17): the newest
SCIM requests and SAML sign-ins of each org, refused ones with their reason, and what provisioning
has made so far. The IdP setup page's "provisioning status" reads it, so that a refused push can be
debugged without a ticket.

Bookkeeping, not history (the audit log is the history): a bounded number of rows per org,
protocol and outcome (KEEP), older ones deleted as new ones arrive. What is kept is the route (its
URL rule, never the path or query), the method, the status, the refusal's reason cut short with
anything shaped like a secret blanked, the credential's name and prefix, the request id. Never a
body, a header, a token or an assertion. The adapters write it after their own transaction, in one
of its own (`note`), so that a request that changed nothing still leaves its trace.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from audit import Actor, clock
from identity.db import Database
from identity.models import IdpGroup, ProvisioningEvent, User
from identity.roles import authorize
from identity.vocabulary import GrantSource

log = logging.getLogger("identity.provisioning")
PROTOCOLS = ("scim", "saml")
SUCCESS, REFUSED = "success", "refused"
KEEP = {SUCCESS: 5, REFUSED: 25}  # rows kept per org, protocol and outcome
REASON_LENGTH = 500
# Our secrets (`<kind>_<12 hex>_<random>`), JWTs, and any longer unbroken run of token characters than
# an id (a UUID's 36), so that "no user '<uuid>'" still names the user.
SECRET_SHAPES = re.compile(r"\b[a-z]+_[0-9a-f]{12}_[A-Za-z0-9_-]+|eyJ[A-Za-z0-9_.-]+|[A-Za-z0-9+/_=-]{40,}")


# How often an adapter writes: an org's successes at most once per SUCCESS_EVERY, a refusal of one
# status and reason once per REFUSAL_EVERY, in each process (`Throttle`).
SUCCESS_EVERY = dt.timedelta(seconds=10)
REFUSAL_EVERY = dt.timedelta(seconds=1)


class Throttle:
    """Tells whether an attempt like this one was let through less than its interval ago, in this
    process. Memory only (a lost count writes one row more); with N processes, N times the rows."""

    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: dict[tuple[str, ...], float] = {}

    def due(self, org_id: str, attempt: Attempt) -> bool:
        every = SUCCESS_EVERY if attempt.outcome == SUCCESS else REFUSAL_EVERY
        key = (org_id, attempt.protocol, attempt.outcome, str(attempt.status), (attempt.reason or "")[:100])
        now = time.monotonic()
        with self.lock:
            if key in self.last and now - self.last[key] < every.total_seconds():
                return False
            if len(self.last) >= self.MAX_KEYS:  # many orgs and reasons: forget them all rather than grow
                self.last.clear()
            self.last[key] = now
            return True


@dataclass(frozen=True)
class Attempt:
    """One SCIM request or SAML sign-in as the adapter saw it (`status` its HTTP answer)."""

    protocol: str
    method: str
    route: str
    status: int
    reason: str | None = None
    credential: str | None = None
    request_id: str | None = None
    skipped: bool = False  # answered 2xx, but the domain kept what the IdP asked to change (`reason` says why)

    @property
    def outcome(self) -> str:
        """Refused when answered 4xx/5xx, and when the change was skipped under a 2xx: the IdP shows
        its admin a success, so the status page is where the admin learns it did not happen."""
        return REFUSED if self.status >= 400 or self.skipped else SUCCESS


def blank_secrets(text: str) -> str:
    """Return `text` cut to REASON_LENGTH with anything shaped like a secret replaced by `[redacted]`."""
    return SECRET_SHAPES.sub("[redacted]", text)[:REASON_LENGTH]


def note(session: Session, org_id: str, attempt: Attempt) -> None:
    """Keep `attempt` among the org's newest, and forget the oldest beyond KEEP. Not audited:
    it changes nothing anybody may do (as a credential's last-used time)."""
    if attempt.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {attempt.protocol!r}")
    session.add(ProvisioningEvent(
        org_id=org_id, protocol=attempt.protocol, outcome=attempt.outcome, occurred_at=clock.now(),
        method=attempt.method[:8], route=attempt.route[:200], status=attempt.status,
        reason=None if attempt.reason is None else blank_secrets(attempt.reason),
        credential=None if attempt.credential is None else attempt.credential[:200],
        request_id=None if attempt.request_id is None else attempt.request_id[:64]))
    session.flush()
    _forget_beyond(session, org_id, attempt.protocol, attempt.outcome)


def keep(db: Database, throttle: Throttle, org_id: str, attempt: Attempt) -> None:
    """`note` the attempt in a transaction of its own when `throttle` lets it through; a failure is
    logged, never raised: bookkeeping never turns an answer into an error."""
    if not throttle.due(org_id, attempt):
        return
    try:
        with db.transaction() as session:
            note(session, org_id, attempt)
    except Exception:  # any database failure: the request itself has been answered already
        log.exception("could not keep a %s request in the provisioning status", attempt.protocol)


def _forget_beyond(session: Session, org_id: str, protocol: str, outcome: str) -> None:
    e = ProvisioningEvent
    same = (e.org_id == org_id, e.protocol == protocol, e.outcome == outcome)
    oldest_kept = select(e.id).where(*same).order_by(e.id.desc()).offset(KEEP[outcome] - 1).limit(1).scalar_subquery()
    session.execute(delete(e).where(*same, e.id < oldest_kept))


@dataclass(frozen=True)
class Seen:
    """A kept attempt, as the status shows it."""

    protocol: str
    outcome: str
    at: dt.datetime
    method: str
    route: str
    status: int
    reason: str | None
    credential: str | None
    request_id: str | None

    @classmethod
    def of(cls, row: ProvisioningEvent) -> Seen:
        return cls(row.protocol, row.outcome, row.occurred_at, row.method, row.route, row.status, row.reason,
                   row.credential, row.request_id)


@dataclass(frozen=True)
class ProvisioningStatus:
    """An org's provisioning at a glance: the last request of each protocol, the newest refusals,
    and what SCIM and SAML have made (live users by source, deactivated ones, IdP groups)."""

    last_scim: Seen | None
    last_saml: Seen | None
    refusals: list[Seen]
    scim_users: int
    scim_users_deactivated: int
    saml_users: int
    groups: int


def provisioning_status(session: Session, actor: Actor, org_id: str) -> ProvisioningStatus:
    """Return the org's provisioning status (for those who read IdP trust: owners and admins)."""
    authorize(actor, "trust.read", org_id=org_id)
    e = ProvisioningEvent
    last = {protocol: session.scalars(select(e).where(e.org_id == org_id, e.protocol == protocol)
                                      .order_by(e.id.desc()).limit(1)).first() for protocol in PROTOCOLS}
    refusals = session.scalars(select(e).where(e.org_id == org_id, e.outcome == REFUSED)
                               .order_by(e.occurred_at.desc(), e.id.desc()).limit(KEEP[REFUSED]))
    live = (User.org_id == org_id, User.deleted_at.is_(None))
    by_source = dict(session.execute(select(User.source, func.count()).where(*live).group_by(User.source)).all())
    deactivated = session.scalar(select(func.count()).where(*live, User.source == GrantSource.SCIM,
                                                            User.active.is_(False)))
    groups = session.scalar(select(func.count()).select_from(IdpGroup).where(IdpGroup.org_id == org_id))
    return ProvisioningStatus(
        last_scim=None if last["scim"] is None else Seen.of(last["scim"]),
        last_saml=None if last["saml"] is None else Seen.of(last["saml"]),
        refusals=[Seen.of(row) for row in refusals], scim_users=by_source.get(GrantSource.SCIM, 0),
        scim_users_deactivated=deactivated or 0, saml_users=by_source.get(GrantSource.SAML, 0), groups=groups or 0)
