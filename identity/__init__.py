"""The identity domain: orgs, teams, users, roles, seats, keys; the app factory and the CLI."""

from identity import emails as _emails  # noqa: F401  (keeps user_emails in step with every flush)
from identity.app import create_app

__all__ = ["create_app"]
