"""Who made a change, through which credential, from where."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

ACTOR_TYPES = ("user", "scim_token", "scim_client", "api_key", "system")


@dataclass(frozen=True)
class Actor:
    """The subject of an audit event and the context of the request that carried it.

    `role` is the actor's org role when it acts as a user or through that user's API key;
    services use it to authorize. `session_id` names the browser session a user acts through (its
    row's id, the token's digest: identity.sessions), so that a write is refused once that session
    ended while it ran. `expires_at` is when the credential it acts through ends by itself (an OAuth
    access token's `exp`), so that a write is refused once that passed while it ran. `team_id` is the
    one team a credential that belongs to a team, not a person, acts for (a team service key:
    identity.keys), so that identity.roles holds it to that team. None of the four is part of the
    audit record.
    """

    type: str
    id: str
    display: str
    org_id: str | None = None
    role: str | None = None
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    # The request id the client sent (X-Request-Id), kept beside the server's own `request_id`.
    client_request_id: str | None = None
    session_id: str | None = None
    expires_at: dt.datetime | None = None
    team_id: str | None = None

    def __post_init__(self) -> None:
        if self.type not in ACTOR_TYPES:
            raise ValueError(f"unknown actor type {self.type!r}")

    def with_request(self, request_id: str | None, ip: str | None, user_agent: str | None, *,
                     client_request_id: str | None = None) -> Actor:
        """Return this actor carrying the request's context."""
        return replace(self, request_id=request_id, ip=ip, user_agent=user_agent,
                       client_request_id=client_request_id)


def system_actor(display: str = "system", request_id: str | None = None) -> Actor:
    """Return the actor for the service itself and its operators' CLI."""
    return Actor(type="system", id="system", display=display, request_id=request_id)
