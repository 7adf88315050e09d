"""What a sign-in may do only once, across every process: a pending AuthnRequest is consumed once,
an assertion id is burned until it expires (SAML profiles 2.0 section 4.1.4.5: the SP must not
accept an assertion twice). python3-saml keeps neither; the database does, shared by all hosts.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import cast

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit import clock
from identity.errors import DomainError
from identity.model_base import fits
from saml.models import SamlPendingRequest, SamlSeenAssertion
from saml.protocol import Assertion, Refused

PENDING_REQUEST_TTL = dt.timedelta(minutes=10)
PURGE_PROBABILITY = 1 / 64


class TooManyPendingRequests(DomainError):
    """This client address has as many unanswered sign-ins pending as it may (anonymous writes are capped)."""

    code = "too_many_pending_sign_ins"


def remember_request(session: Session, org_id: str, request_id: str, relay_state: str | None, *,
                     client_address: str | None = None, limit: int | None = None) -> None:
    """Keep an AuthnRequest id we are about to send, so that its response can be matched once.

    Anybody may start a sign-in, so at most `limit` unexpired requests are kept per client
    address; one more is refused (TooManyPendingRequests) until the oldest expire.
    """
    now = clock.now()
    if random.random() < PURGE_PROBABILITY:
        session.execute(delete(SamlPendingRequest).where(SamlPendingRequest.expires_at <= now))
    if client_address is not None and limit is not None:
        live = session.scalars(select(SamlPendingRequest.id).where(
            SamlPendingRequest.client_address == client_address, SamlPendingRequest.expires_at > now).limit(limit))
        if len(live.all()) >= limit:
            raise TooManyPendingRequests("too many sign-ins are pending from this address", limit=limit)
    session.add(SamlPendingRequest(id=request_id, org_id=org_id, relay_state=relay_state, created_at=now,
                                   expires_at=now + PENDING_REQUEST_TTL, client_address=client_address))


# A LogoutRequest we sent waits for its LogoutResponse in the same table, under this prefix, so
# that an AuthnRequest's response can never use a logout request's id, nor the other way round.
LOGOUT = "logout:"


def remember_logout_request(session: Session, org_id: str, request_id: str) -> None:
    """Keep a LogoutRequest id we are about to send, so that the IdP's LogoutResponse is taken once
    (its InResponseTo must name it; SAML profiles 2.0 section 4.4.4.2). Only a signed-in member's
    sign-out sends one: no per-address cap is needed."""
    remember_request(session, org_id, LOGOUT + request_id, None)


def consume_logout_request(session: Session, org_id: str, request_id: str) -> None:
    """Use up the LogoutRequest a LogoutResponse answers: refuse one we never sent, sent for another
    org, answered already or expired."""
    _consume(session, org_id, LOGOUT + request_id)


def consume_request(session: Session, org_id: str, request_id: str) -> str | None:
    """Use up a pending request and return its RelayState: refuse an id we never issued, issued for
    another org, used or expired.
    """
    if request_id.startswith(LOGOUT):
        raise Refused("unknown_in_response_to")
    return _consume(session, org_id, request_id)


def _consume(session: Session, org_id: str, request_id: str) -> str | None:
    """One DELETE ... RETURNING: the row lock it takes makes a racing consumer wait and find nothing."""
    found = session.execute(delete(SamlPendingRequest).where(
        SamlPendingRequest.id == request_id, SamlPendingRequest.org_id == org_id,
    ).returning(SamlPendingRequest.relay_state, SamlPendingRequest.expires_at)).one_or_none()
    if found is None:
        raise Refused("unknown_in_response_to")
    relay_state: str | None
    relay_state, expires_at = found
    if expires_at <= clock.now():
        raise Refused("request_expired")
    return relay_state


# A plain INSERT built once, not an ORM object: nothing reads the row back, a conflict is the answer.
INSERT_SEEN_ASSERTION = insert(cast(Table, SamlSeenAssertion.__table__))


def burn_assertion(session: Session, org_id: str, assertion_id: str, expires_at: dt.datetime, *,
                   savepoint: bool = False) -> None:
    """Remember an assertion id until it expires; refuse it when it was seen before (any process).

    The primary key (org, assertion id) decides between racing processes. With `savepoint`, a
    refusal leaves the rest of the transaction usable. An id longer than the column is refused
    `value_too_long` (saml.service.check_lengths), before any statement, on every database alike.
    """
    if not assertion_id:
        raise Refused("malformed")
    if not fits(assertion_id, SamlSeenAssertion.assertion_id):  # refused each time: nothing to remember
        raise Refused("value_too_long")
    if random.random() < PURGE_PROBABILITY:  # expired ids are swept now and then, not on every sign-in
        session.execute(delete(SamlSeenAssertion).where(SamlSeenAssertion.expires_at <= clock.now()))
    row = {"org_id": org_id, "assertion_id": assertion_id, "expires_at": expires_at}
    try:
        if savepoint:
            with session.begin_nested():
                session.execute(INSERT_SEEN_ASSERTION, row)
        else:
            session.execute(INSERT_SEEN_ASSERTION, row)
    except IntegrityError:
        raise Refused("replayed") from None


def use_up(session: Session, org_id: str, assertion: Assertion) -> None:
    """Use up a verified SP-initiated assertion and its request without signing in, refusing as
    `sign_in` would first: a replayed assertion, an unknown or expired request.

    For a response refused before `sign_in` (saml.binding), so that its reason does not hide these.
    """
    burn_assertion(session, org_id, assertion.assertion_id, assertion.expires_at)
    if assertion.in_response_to:
        consume_request(session, org_id, assertion.in_response_to)
