"""The identity domain: orgs, teams, users, roles, seats, keys (the web shell is identity.web)."""

from identity import emails as _emails  # noqa: F401  (keeps user_emails in step with every flush)
