"""SCIM protocol errors (RFC 7644 section 3.12): one class per error type, status and scimType on the class.

The adapter renders any `ScimError` with `to_json()`; domain errors (identity.errors) are mapped onto
these in one table (scim.web.DOMAIN_ERRORS). `status` is rendered as a string because Okta's test suite
compares it so.
"""

from __future__ import annotations

from typing import Any, ClassVar

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(Exception):
    """Base of every error the SCIM adapter answers with a SCIM error body."""

    status: ClassVar[int] = 400
    scim_type: ClassVar[str | None] = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def to_json(self) -> dict[str, Any]:
        """Return the error body of RFC 7644 section 3.12."""
        return error_body(self.status, self.scim_type, self.detail)


def error_body(status: int, scim_type: str | None, detail: str) -> dict[str, Any]:
    """Return an error body of RFC 7644 section 3.12, `status` as a string."""
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


class InvalidFilter(ScimError):
    """The filter syntax was invalid, or the attribute and comparison combination is not supported."""

    scim_type = "invalidFilter"


class TooMany(ScimError):
    scim_type = "tooMany"


class Uniqueness(ScimError):
    status = 409
    scim_type = "uniqueness"


class Mutability(ScimError):
    """The change is not compatible with the attribute's mutability (readOnly `id`, `meta`, ...)."""

    scim_type = "mutability"


class InvalidSyntax(ScimError):
    """The request body could not be parsed or violates the schema (a PATCH without `Operations`)."""

    scim_type = "invalidSyntax"


class InvalidPath(ScimError):
    """A PATCH `path` was invalid or malformed."""

    scim_type = "invalidPath"


class NoTarget(ScimError):
    """A PATCH `path` selected nothing where something was required (`remove` without a path)."""

    scim_type = "noTarget"


class InvalidValue(ScimError):
    """A required value was missing, or a value was not compatible with the attribute's type."""

    scim_type = "invalidValue"


class InvalidVersion(ScimError):
    scim_type = "invalidVers"


class Sensitive(ScimError):
    status = 403
    scim_type = "sensitive"


class NotFound(ScimError):
    status = 404


class PreconditionFailed(ScimError):
    """`If-Match` named a version the resource no longer has."""

    status = 412


class Unauthorized(ScimError):
    """No credential, or one that is wrong, expired or revoked (RFC 7644 section 2)."""

    status = 401


class Forbidden(ScimError):
    """Not allowed; also the seat cap refusing a new member (its detail says so)."""

    status = 403


class TooManyRequests(ScimError):
    """Past the per-org rate limit; the response carries Retry-After."""

    status = 429


class PayloadTooLarge(ScimError):
    """A body or a bulk request over the limits ServiceProviderConfig advertises."""

    status = 413


class InternalError(ScimError):
    """An unexpected failure (a database down among them): a bare 500 naming the request id, its
    traceback logged once and never sent (STYLE.md). Made by `internal_error`."""

    status = 500


# What the provisioning status keeps of any 500: one reason for all, so the throttle takes them as one.
INTERNAL_ERROR = "internal error"


def internal_error(request_id: str | None) -> InternalError:
    """Return the 500 of an unexpected failure while answering `request_id` (scim.web answers a
    view's, scim.lookup_front its own)."""
    return InternalError(f"{INTERNAL_ERROR}; request id {request_id}")
