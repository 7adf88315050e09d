"""Domain errors: a stable code and context, no transport status. Adapters map codes to the wire."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a domain service raises on purpose."""

    code = "domain_error"

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """A uniqueness rule: duplicate userName, team or group name."""

    code = "conflict"


class InvalidValue(DomainError):
    code = "invalid_value"


class ValueTooLong(InvalidValue):
    """A value longer than what keeps it: a team's name (200) made of a group's (255) under mirror,
    which a SAML sign-in answers as it does a claim longer than its column (saml.service.check_lengths)."""

    code = "value_too_long"


class AmountOutOfRange(InvalidValue):
    """A running money total (a balance, a period's spend or cost) would pass identity.wallets.MAX_TOTAL."""

    code = "amount_out_of_range"


class PermissionDenied(DomainError):
    code = "permission_denied"


class LastOwner(DomainError):
    """The change would leave the org without an active owner."""

    code = "last_owner"


class SeatCapReached(DomainError):
    """The org's `max_seats` cap refuses a new member."""

    code = "seat_cap_reached"


class Unauthenticated(DomainError):
    code = "unauthenticated"
