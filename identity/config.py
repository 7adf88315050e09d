"""Configuration from environment variables (DESIGN.md section 7). Secrets are never logged."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

DEFAULT_DATA_DIR = Path("var")
MAX_BODY_BYTES = 1024 * 1024  # documented in the README; larger bodies get 413


def data_dir() -> Path:
    """Return the folder of the embedded default's files (`IDENTITY_DATA_DIR`, default ./var)."""
    return Path(os.environ.get("IDENTITY_DATA_DIR", DEFAULT_DATA_DIR)).resolve()


def database_url() -> str:
    """Return `DATABASE_URL`, or the embedded SQLite file in the data folder."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{data_dir() / 'identity.db'}"


def secret_key() -> str:
    """Return `SECRET_KEY`; for the embedded default, one generated once and kept in the data folder."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = data_dir() / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def base_url() -> str:
    """Return `BASE_URL`, the public address this service is reached at."""
    return os.environ.get("BASE_URL", "http://127.0.0.1:8000").rstrip("/")


def from_environment() -> dict[str, object]:
    """Return the Flask config that the environment asks for."""
    settings: dict[str, object] = {
        "DATABASE_URL": database_url(),
        "SECRET_KEY": secret_key(),
        "BASE_URL": base_url(),
        "MAX_CONTENT_LENGTH": MAX_BODY_BYTES,
    }
    for name in ("SESSION_IDLE_MINUTES", "SESSION_ABSOLUTE_HOURS", "SCIM_RATE_LIMIT", "SAML_MAX_ISSUE_AGE_SECONDS"):
        if os.environ.get(name):
            settings[name] = int(os.environ[name])
    return settings
