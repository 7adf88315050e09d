"""What a request's code reads from the app it runs in: the database the factory attached, and whether
its BASE_URL is https."""

from __future__ import annotations

from flask import current_app

from identity import config
from identity.db import Database

EXTENSION = "identity.db"


def database() -> Database:
    """Return the current app's database."""
    db: Database = current_app.extensions[EXTENSION]
    return db


def cookie_path(path: str) -> str:
    """Return a cookie's Path for `path` of this service, under BASE_URL's path (identity.config.path_under):
    a cookie set for /login/ under a service served at /identity/ never came back."""
    return config.path_under(str(current_app.config["BASE_URL"]), path)


def secure_cookies() -> bool:
    """Tell whether cookies go out Secure: when the app's BASE_URL is https (identity.config.is_https)."""
    return config.is_https(str(current_app.config["BASE_URL"]))


def public_base_url() -> str:
    """Return the app's BASE_URL (checked at start), the address clients reach it by, no trailing slash."""
    return str(current_app.config["BASE_URL"]).rstrip("/")
