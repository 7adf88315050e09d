"""Secrets shown once: generated with a visible prefix, kept as SHA-256, compared in constant time.

The secrets are 256-bit random values, so a fast hash is enough: there is nothing to brute-force.
A secret reads `<kind>_<prefix>_<random>`; the prefix finds the row, the hash proves the rest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as _random
from dataclasses import dataclass

# What `generate` makes: a kind in lowercase letters, 12 hex digits, then token_urlsafe's alphabet.
# Anything else (a NUL, which PostgreSQL refuses in text, any byte a header may carry) never
# reaches a lookup.
_FORM = re.compile(r"([a-z]+_[0-9a-f]{12})_[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class NewSecret:
    """A freshly made secret: `plaintext` is shown once and never stored."""

    prefix: str
    plaintext: str
    hash: str


def digest(plaintext: str) -> str:
    """Return the hex SHA-256 under which a secret is stored."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


# The audit log's name for a stored hash's fingerprint. Not a secret, so not one of the names
# audit.record refuses (SECRET_FIELDS): see `fingerprint`.
FINGERPRINT = "hash_fingerprint"
_FINGERPRINT_LABEL = b"identity audit: fingerprint of a stored credential hash, v1"


def fingerprint(stored_hash: str) -> str:
    """Return what an audit event records of a credential's stored hash, so that reconciliation
    finds a hash replaced by SQL (identity.reconcile): HMAC-SHA256 of the hash under a fixed
    domain-separation label, truncated to 128 bits.

    It is safe in a log that many read: it is computed from the stored hash, so testing a guessed
    secret against it costs the stored hash's own work and more (a fingerprint of a slow hash
    would be no faster to attack than the hash), and the secrets are 256-bit random anyway; it
    cannot be turned back into the hash, which no check accepts in place of the secret either.
    The label keeps it from equalling any other use of SHA-256 over the same hash.
    """
    return hmac.new(_FINGERPRINT_LABEL, stored_hash.encode(), hashlib.sha256).hexdigest()[:32]


def generate(kind: str) -> NewSecret:
    """Make a new secret of `kind` (`scim`, `key`, `inv`, ...)."""
    prefix = f"{kind}_{_random.token_hex(6)}"
    plaintext = f"{prefix}_{_random.token_urlsafe(32)}"
    return NewSecret(prefix=prefix, plaintext=plaintext, hash=digest(plaintext))


def split_prefix(plaintext: str) -> str | None:
    """Return the lookup prefix of a presented secret, or None when it is not of the form `generate` makes."""
    form = _FORM.fullmatch(plaintext)
    return form.group(1) if form else None


def matches(plaintext: str, stored_hash: str) -> bool:
    """Tell whether `plaintext` is the secret stored as `stored_hash`, in constant time."""
    return hmac.compare_digest(digest(plaintext), stored_hash)
