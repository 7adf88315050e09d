"""Review s22 (second, hostile): a test that failed (xfail strict; fixed, mark gone): a connection lost at COMMIT was answered
as a transient conflict that "changed nothing" (identity.db.transient_kind), though the server may
have committed. Real PostgreSQL behind a real TCP relay that drops the connection once the server
has answered the COMMIT that follows a member's INSERT, before the answer reaches the service.
Fixed: a 500 saying the change may have been made (identity.db.CommitUnknown); the IdP's lookup then finds it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from audit import Actor
from identity import scim_credentials
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.app import create_app
from tests.commit_cutter import CommitCutter, relayed_url

pytestmark = pytest.mark.postgres_only("a PostgreSQL connection through a relay that drops it")


@pytest.fixture
def relayed(db_url: str) -> Iterator[tuple[CommitCutter, str]]:
    with relayed_url(db_url) as relay:
        yield relay


def test_a_scim_create_answered_503_made_nothing(db: Database, system: Actor, acme: NewOrg,
                                                  relayed: tuple[CommitCutter, str]) -> None:
    cutter, url = relayed
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    through = Database(url)
    try:
        app = create_app({"DATABASE": through, "DATABASE_URL": url, "SECRET_KEY": "test-secret-key-32-characters-min",
                          "BASE_URL": "http://localhost", "TESTING": True})
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        user: dict[str, Any] = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                "userName": "newhire@acme.test", "active": True}
        cutter.armed = True
        first = client.post("/scim/v2/Users", json=user, headers=headers)
        assert cutter.cuts == 1, first.data  # the COMMIT after the member's INSERT was cut
        # Never a 503 "changed nothing: send it again": a 500 saying it may have been made, with the request id.
        assert first.status_code == 500, first.data
        detail = first.get_json()["detail"]
        assert "may have been made" in detail and first.headers["X-Request-Id"] in detail, detail
        assert "Retry-After" not in first.headers
        # The IdP's next attempt starts from its lookup, which finds the member made.
        found = client.get('/scim/v2/Users?filter=userName eq "newhire@acme.test"', headers=headers)
        assert found.status_code == 200 and found.get_json()["totalResults"] == 1, found.data
    finally:
        through.dispose()
