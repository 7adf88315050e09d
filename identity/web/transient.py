"""A transient database conflict (identity.db.transient_kind: a deadlock, a serialization failure, a
lock not available, SQLite's lock held past its busy timeout, a connection the server ended) answered
at every door as a 503 with `Retry-After: 1` in the door's own format, never a 500.

The doors: SCIM's error handler (scim.web), the app's (identity.web.app: the admin API, usage, the
console and SAML pages), and the two answers made in front of Flask (identity.web.keycheck,
scim.lookup_front). A streamed answer (a big group's members) that fails after its first bytes
cannot change its status; it fails as any other error would.

The database rolled the request's transaction back, so nothing was written and the client may send
it again. The service does not re-run it itself (identity.db.transient_kind says why). Logged as one
warning naming the kind and the request id, no traceback;
counted as every answer is, by route and status (identity_http_requests_total, 503).

A connection lost by a write's COMMIT (identity.db.CommitUnknown) is not one: the server may have
committed, so no door answers it "changed nothing". Every door answers it as a 500 naming the request
id whose detail says the change may have been made and to read it back before sending it again; one
error line. A 500, not a 503: a client retries a 503 as it is (Entra after its Retry-After, HTTP
clients' retry policies), and a SCIM create sent again meets a 409 for the member it made. On a 500
Okta fails the task and Entra retries the object later, both starting from their lookup (a
`userName eq` filter), which finds the member made. The gateway's usage debit is the exception in
kind, not in answer: a record sent again with the same request_id is booked once (`duplicate`), so
the detail says that retry is safe.
"""

from __future__ import annotations

import logging

from werkzeug.exceptions import InternalServerError, ServiceUnavailable

from identity.db import CommitUnknown

log = logging.getLogger("identity.http")  # the app's request log, beside its "unhandled error" lines

CODE = "conflict_retry"
DETAIL = ("the request conflicted with another one made at the same time, or met a database connection "
          "that had just ended, and changed nothing; send it again")
RETRY_AFTER_SECONDS = 1
# What a person's page says (the console's, the SAML pages'): their form or sign-in did nothing.
PAGE_MESSAGE = ("Your request ran into another change made at the same moment, and nothing was changed. "
                "Please try again.")


class TransientConflict(ServiceUnavailable):
    """The 503 a transient conflict is answered with; each door renders it in its own format (its
    Retry-After header among the headers it keeps: identity.web.http_errors.kept_headers)."""

    problem_code = CODE  # the admin API's problem code (identity.web.app._problem_for_http_error)

    def __init__(self) -> None:
        super().__init__(DETAIL, retry_after=RETRY_AFTER_SECONDS)


def answered(kind: str, request_id: str | None) -> TransientConflict:
    """Log the conflict of `kind` met by request `request_id` (one warning line, no traceback) and
    return its 503."""
    log.warning("transient database conflict: %s; answered 503 for the client to retry", kind,
                extra={"conflict": kind, "request_id": request_id})
    return TransientConflict()


UNKNOWN_CODE = "outcome_unknown"
UNKNOWN_DETAIL = ("the database connection was lost while the change was being committed, so it may have been made; "
                  "read it back before sending the request again (a usage record sent again with the same "
                  "request_id is booked once)")
UNKNOWN_PAGE_MESSAGE = ("The connection to the database was lost while your change was being saved, so it may "
                        "have been saved. Please check before trying again.")


class OutcomeUnknown(InternalServerError):
    """The 500 a connection lost at COMMIT is answered with (identity.db.CommitUnknown); each door
    renders it in its own format, with the request id."""

    problem_code = UNKNOWN_CODE  # the admin API's problem code (identity.web.app._problem_for_http_error)

    def __init__(self) -> None:
        super().__init__(UNKNOWN_DETAIL)


def unknown(error: CommitUnknown, request_id: str | None) -> OutcomeUnknown:
    """Log the lost COMMIT `error` of request `request_id` (one error line, no traceback: the driver's
    error says only that the connection went) and return its 500."""
    log.error("database connection lost at COMMIT: %s; answered 500, the change may have been made",
              error.kind, extra={"conflict": error.kind, "request_id": request_id})
    return OutcomeUnknown()
