"""The one key userName, email and SAML NameID compare through (DESIGN.md sections 3.1 and 5).

`name_key` is computed here, in Python, and stored in its own indexed column, so that two values
compare the same way on SQLite and PostgreSQL whatever either database's `lower()` and collation
would say: `ÅSA@x.test` typed with a precomposed Å or with A and a combining ring is one name, and
`Straße` is `STRASSE` (Unicode full case folding, which `lower()` does not do).

`checked_text` refuses what no name or address should carry: control characters, format
characters (Unicode category Cf: zero-width spaces and joiners, the bidirectional overrides and
isolates that make `moc.evil@bob` read as something else) and line or paragraph separators. They
would make two names that look the same compare different, and travel on into audit exports.
`checked_user_name`, `checked_email` and `checked_emails` are the member's fields' checks built on
it, one rule for every way a member comes in (API, invitation, SCIM, SAML); `checked_address`, one
address and no more, is the invitee's, whom mail is sent to.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from identity.errors import InvalidValue

__all__ = ["name_key", "unsafe_character", "checked_text"]

# Cc control, Cf format (bidi controls included), Cs surrogates, Zl/Zp line and paragraph separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def name_key(value: str) -> str:
    """Return the comparison key of a userName, email or NameID: NFC, then casefold.

    Case folding can leave a sequence that NFC would compose differently (`ǰ` folds to j and a
    combining caron), so the folded text is normalized once more: equal inputs give equal keys.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).casefold())


def unsafe_character(value: str) -> str | None:
    """Return the first control, format or separator character of `value` as `U+XXXX`, or None."""
    for char in value:
        if unicodedata.category(char) in REFUSED_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


def checked_text(value: str, field: str) -> str:
    """Return `value`, or raise InvalidValue naming the first character a name must not contain."""
    found = unsafe_character(value)
    if found is not None:
        raise InvalidValue(f"{field} must not contain control, format or bidirectional characters ({found})",
                           field=field)
    return value


def checked_email(email: Any, field: str = "email") -> str | None:
    """Return a member's email as given, or raise InvalidValue: a string of at most 320 characters
    (RFC 5321's 64 + @ + 255) with no control, format or bidirectional characters (an address
    never has them; they would make a look-alike of another address and travel on into mail
    headers and audit exports; identity.names). None: no email."""
    if email is None:
        return None
    if not isinstance(email, str) or len(email) > 320:
        raise InvalidValue("email must be an address of at most 320 characters", field=field)
    return checked_text(email, field)


# RFC 5322's specials but "@" and ".": where a mail header reads an address, each of them separates
# addresses, quotes, or makes a display name, a comment, a route or a group.
NOT_IN_AN_ADDRESS = frozenset('()<>[]:;,"\\')


def checked_address(value: Any, field: str = "email") -> str:
    """Return one email address, stripped, or raise InvalidValue: `checked_email`'s rules, and a local
    part, one "@" and a domain of dot-separated labels, with no whitespace and none of
    `( ) < > [ ] : ; , " \\`, so that whatever reads it (a To header above all) finds one address,
    this one. For an address mail is sent to on its say alone (an invitation's): an IdP's emails are
    the IdP's to keep, and stay under `checked_email` only."""
    address = checked_email(value.strip() if isinstance(value, str) else value, field) or ""
    local, at, domain = address.rpartition("@")
    if (not at or not local or "@" in local or not all(domain.split("."))
            or any(char.isspace() or char in NOT_IN_AN_ADDRESS for char in address)):
        raise InvalidValue(f"{field} must be one email address, name@domain: {address!r} is not", field=field)
    return address


def checked_emails(attributes: dict[str, Any] | None) -> None:
    """Refuse an `emails` array (RFC 7643 section 4.1.2) holding an address that `checked_email` refuses."""
    for item in (attributes or {}).get("emails") or []:
        if isinstance(item, dict) and isinstance(item.get("value"), str):
            checked_email(item["value"], "emails")


def checked_user_name(user_name: Any) -> str:
    """Return a userName stripped, or raise InvalidValue: required, at most 320 characters, and
    without control, format or bidirectional characters (identity.names)."""
    if user_name is not None and not isinstance(user_name, str):
        raise InvalidValue("userName must be a string", field="userName")
    name = (user_name or "").strip()
    if not name:
        raise InvalidValue("userName is required", field="userName")
    if len(name) > 320:
        raise InvalidValue("userName must be at most 320 characters", field="userName")
    return checked_text(name, "userName")
