"""Our SP private keys sealed at rest: AES-256-GCM under a key derived from SECRET_KEY.

A copy of the database (a backup, a replica, a leaked dump) then does not hold a key that signs
AuthnRequests and decrypts assertions as this service; SECRET_KEY, which lives outside the
database, is needed as well.

Stored form: `sealed:v1:<kid>:<base64url(nonce || ciphertext || tag)>`. The AES key is
HKDF-SHA256 (RFC 5869) over SECRET_KEY with the info label `INFO`; `kid` names the SECRET_KEY it
came from (HKDF with another label, 8 hex digits) so that a row sealed under an older SECRET_KEY
is recognized without trying every key. The org id is the AES-GCM associated data: a sealed key
copied into another org's row does not open. A value without the prefix is a plaintext PEM from
before sealing (migration 0013c); it is read as it is and sealed at its first use.

Rotation: start the service with the new SECRET_KEY and the old one in SECRET_KEY_PREVIOUS
(several may be given, separated by spaces); rows open under either and are sealed again under
the new one at their first use, or all at once with `identity saml reseal-keys`.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from saml.models import SamlConnection

PREFIX = "sealed:v1:"
INFO = b"identity saml sp-private-key v1"
KID_INFO = b"identity saml sp-private-key kid v1"


class KeyUnavailable(RuntimeError):
    """A sealed SP key that none of the configured SECRET_KEYs opens."""


def _hkdf(secret: str, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret.encode())


@functools.lru_cache(maxsize=16)  # asked on every sign-in (saml.web.settings): derive once per secret
def key_id(secret: str) -> str:
    """Name the SECRET_KEY `secret` (it reveals nothing of it)."""
    return _hkdf(secret, KID_INFO, 4).hex()


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def sealed_under(secret: str, stored: str) -> bool:
    """Tell whether `stored` is sealed under `secret` (False for a plaintext PEM)."""
    return stored.startswith(f"{PREFIX}{key_id(secret)}:")


def seal(secret: str, org_id: str, pem: str) -> str:
    """Seal a PEM private key of `org_id` under `secret`."""
    nonce = os.urandom(12)
    sealed = AESGCM(_hkdf(secret, INFO, 32)).encrypt(nonce, pem.encode(), org_id.encode())
    return f"{PREFIX}{key_id(secret)}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def unseal(secrets: Sequence[str], org_id: str, stored: str) -> str:
    """Return the PEM in `stored` (plaintext as it is), opened with whichever of `secrets` sealed it."""
    if not is_sealed(stored):
        return stored
    kid, _, body = stored[len(PREFIX):].partition(":")
    for secret in secrets:
        if secret and key_id(secret) == kid:
            raw = base64.urlsafe_b64decode(body)
            try:
                return AESGCM(_hkdf(secret, INFO, 32)).decrypt(raw[:12], raw[12:], org_id.encode()).decode()
            except InvalidTag:
                break
    raise KeyUnavailable(f"the SP private key of org {org_id} is sealed under a SECRET_KEY (key id {kid}) that is "
                         "neither SECRET_KEY nor in SECRET_KEY_PREVIOUS")


def reseal(secrets: Sequence[str], org_id: str, stored: str) -> str | None:
    """Return `stored` sealed under `secrets[0]`, or None when it already is."""
    if sealed_under(secrets[0], stored):
        return None
    return seal(secrets[0], org_id, unseal(secrets, org_id, stored))


def seal_new_key(connection: SamlConnection, secret: str) -> None:
    """Seal the connection's key when it is still plaintext (a connection just made by
    `saml.configuration.configure_connection`), in the caller's transaction."""
    if not is_sealed(connection.sp_key_pem):
        connection.sp_key_pem = seal(secret, connection.org_id, connection.sp_key_pem)


def previous_secrets(value: str | None) -> tuple[str, ...]:
    """Parse SECRET_KEY_PREVIOUS: one or more old SECRET_KEYs separated by whitespace."""
    return tuple((value or "").split())
