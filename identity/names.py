"""The one key userName, email and SAML NameID compare through (DESIGN.md sections 3.1 and 5).

`name_key` is computed here, in Python, and stored in its own indexed column, so that two values
compare the same way on SQLite and PostgreSQL whatever either database's `lower()` and collation
would say: `ÅSA@x.test` typed with a precomposed Å or with A and a combining ring is one name, and
`Straße` is `STRASSE` (Unicode full case folding, which `lower()` does not do).

`checked_text` refuses what no name or address should carry: control characters, format
characters (Unicode category Cf: zero-width spaces and joiners, the bidirectional overrides and
isolates that make `moc.evil@bob` read as something else) and line or paragraph separators. They
would make two names that look the same compare different, and travel on into audit exports.
"""

from __future__ import annotations

import unicodedata

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
