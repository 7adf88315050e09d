"""The identity domain: orgs, teams, users, roles, seats, keys; the app factory and the CLI."""

from identity.app import create_app

__all__ = ["create_app"]
