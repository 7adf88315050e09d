"""The service's Ed25519 key that signs audit checkpoints, and checking those signatures.

The key comes from `AUDIT_SIGNING_KEY` (a PEM private key, or the base64 of the 32 raw bytes);
without it, one is generated once and kept in the data folder, as the Flask secret key is. It is
never logged and never put in an event. Every host of one deployment must share the same key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ENV_VAR = "AUDIT_SIGNING_KEY"
KEY_FILE = "audit_signing_key.pem"


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """Return the key in `text`: a PEM (PKCS#8) Ed25519 private key, or base64 of its 32 raw bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:  # cryptography's words name no setting
            raise ValueError(f"{ENV_VAR} is not a readable PEM private key (one without a password)") from error
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{ENV_VAR} is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise ValueError(f"{ENV_VAR} is neither PEM nor base64") from error
    if len(raw) != 32:
        raise ValueError(f"{ENV_VAR} must hold 32 raw bytes, not {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """Return the configured key, or the one kept in `data_dir` (made there on first use)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return parse_private_key(configured)
    path = data_dir / KEY_FILE
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the key's folder: the service's alone
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    return parse_private_key(path.read_text())


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Return the PEM (SubjectPublicKeyInfo) of the key's public half."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(pem: str) -> Ed25519PublicKey:
    """Return the Ed25519 public key in a PEM text."""
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Return the key's id: the hex SHA-256 of its 32 raw public bytes (first 32 digits)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    """Return the base64 Ed25519 signature of `message`."""
    return base64.b64encode(key.sign(message)).decode()


def is_valid(public: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    """Tell whether `signature` (base64) is the key's signature of `message`."""
    try:
        public.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
