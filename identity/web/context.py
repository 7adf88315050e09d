"""What a request's code reads from the app it runs in: the database the factory attached."""

from __future__ import annotations

from flask import current_app

from identity.db import Database

EXTENSION = "identity.db"


def database() -> Database:
    """Return the current app's database."""
    db: Database = current_app.extensions[EXTENSION]
    return db
