"""An OAuth access token's `exp` is judged by the service's clock (audit.clock), at the request's
start and again at a write's end: a write during which the token expires is refused and writes nothing,
as a session's write during which its lifetime ends (identity.sessions.lifetime_ended)."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from contextlib import ExitStack
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor, clock
from identity import scim_credentials, users
from identity.db import Database
from identity.models import User
from tests.scim.client import USER, Scim, scim_for


def _oauth_bearer(client: FlaskClient, db: Database, system: Actor, name: str) -> tuple[Scim, dt.datetime]:
    """An org, an OAuth client of it, an access token the client was issued, and the token's `exp`."""
    scim = scim_for(db, client, system, name)
    with db.transaction() as session:
        made = scim_credentials.create_scim_client(session, system, scim.org_id)
    answer = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": made.prefix,
                                               "client_secret": made.secret})
    assert answer.status_code == 200, answer.json
    token: str = answer.json["access_token"]
    return Scim(client, token, scim.org_id), dt.datetime.fromtimestamp(_exp(token), dt.UTC)


def _exp(token: str) -> int:
    """The token's `exp`, read without its key (the test only needs the moment)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(claims["exp"])


def _made(db: Database, org_id: str, user_name: str) -> bool:
    with db.reading() as session:
        return session.scalars(select(User.id).where(User.org_id == org_id, User.user_name == user_name)).first() \
            is not None


def test_a_write_during_which_the_access_token_expires_is_refused_and_writes_nothing(
        client: FlaskClient, db: Database, system: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token was live when the request began; the service's clock reaches its `exp` while the
    write runs (the provisioning done, the credential not yet confirmed). The write's end refuses it:
    SCIM's 401 with its Bearer challenge, and no member made. Before, only a revoked client counted."""
    bearer, ends = _oauth_bearer(client, db, system, "Expiring")
    provision = users.provision_user
    with ExitStack() as later:
        @functools.wraps(provision)
        def provision_while_time_passes(*args: Any, **kwargs: Any) -> Any:
            made = provision(*args, **kwargs)
            later.enter_context(clock.frozen_at(ends))  # the write's end, at the token's end
            return made
        monkeypatch.setattr(users, "provision_user", provision_while_time_passes)
        answer = bearer.post("/Users", {"schemas": [USER], "userName": "late@expiring.test"})
    assert answer.status_code == 401, answer.json
    assert answer.json["status"] == "401" and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert not _made(db, bearer.org_id, "late@expiring.test")


def test_the_access_tokens_exp_is_judged_by_the_services_clock_at_the_requests_start(
        client: FlaskClient, db: Database, system: Actor) -> None:
    """A second before `exp` by the service's clock the token is live; at `exp` it is not (RFC 7519
    section 4.1.4: on or after it, not accepted), for a read and for a write alike."""
    bearer, ends = _oauth_bearer(client, db, system, "Clocked")
    with clock.frozen_at(ends - dt.timedelta(seconds=1)):
        assert bearer.get("/Users").status_code == 200
    with clock.frozen_at(ends):
        assert bearer.get("/Users").status_code == 401
        assert bearer.post("/Users", {"schemas": [USER], "userName": "at-exp@clocked.test"}).status_code == 401
    assert not _made(db, bearer.org_id, "at-exp@clocked.test")
