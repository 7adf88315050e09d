"""The domain's closed words, each a `StrEnum` stored by its value (the strings the tables already hold).

A member is a `str` equal to its value: it compares, hashes, formats and serialises to JSON exactly
as the plain word did, so exports, audit changes and API bodies are unchanged. identity.models maps
the columns that hold these words with `EnumValue`, which writes the value and reads the member.
Audit actions have modules of their own (identity.actions, audit.actions).
"""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Role", "GrantSource", "KeyStatus", "KeyStatusReason", "InvitationStatus", "SessionMethod", "ChargeKind",
    "EnumValue",
]


class Role(enum.StrEnum):
    """An org or team role (DESIGN.md 3.2). Declared lowest first: identity.roles ranks them in this order."""

    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"


class GrantSource(enum.StrEnum):
    """What gave a role grant (DESIGN.md 3.2: each grant remembers its source), and what provisioned a user."""

    MANUAL = "manual"
    SCIM = "scim"
    SAML = "saml"
    INVITATION = "invitation"


class KeyStatus(enum.StrEnum):
    """An API key's state: `blocked` by deactivation (undone by reactivation), `revoked` for good."""

    ACTIVE = "active"
    BLOCKED = "blocked"
    REVOKED = "revoked"


class KeyStatusReason(enum.StrEnum):
    """Why a key is blocked or revoked (None while it is active); also an `api_key.revoked` event's `reason`."""

    MANUAL = "manual"
    DEACTIVATION = "deactivation"
    MEMBER_DELETED = "member_deleted"
    LEFT_TEAM = "left_team"
    TEAM_DELETED = "team_deleted"
    ORG_DELETED = "org_deleted"


class InvitationStatus(enum.StrEnum):
    """The life of an invitation (DESIGN.md 3.6); only a `pending` one can be accepted or declined."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    REVOKED = "revoked"


class SessionMethod(enum.StrEnum):
    """How a browser session was opened: a SAML assertion, a one-time sign-in link, or an owner's break-glass link."""

    SAML = "saml"
    LOGIN_LINK = "login_link"
    BREAK_GLASS = "break_glass"


class ChargeKind(enum.StrEnum):
    """A row of the seat ledger (DESIGN.md 3.4): a prorated purchase, or a cycle's renewal."""

    SEAT_PURCHASE = "seat_purchase"
    SEAT_RENEWAL = "seat_renewal"


E = TypeVar("E", bound=enum.StrEnum)


class EnumValue(TypeDecorator[E], Generic[E]):
    """A column holding one of `enum`'s values as a plain VARCHAR(length), read back as the member.

    The SQL type is exactly the `String(length)` the migrations created (no CHECK, no native enum),
    so the schema and every stored value stay as they were. Writing a word outside the enum fails
    at the flush, instead of storing a row that no reader could interpret.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum
        self.length = length

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)

    @property
    def python_type(self) -> type[E]:
        return self.enum
