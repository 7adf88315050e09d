"""SCIM credentials: bearer tokens, OAuth client credentials, revocation, rate limits."""

from __future__ import annotations

import json

from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from audit import Actor
from identity import scim_credentials
from identity.db import Database
from identity.web.cli import main
from tests.scim.client import Scim, scim_for


def test_client_credentials_token_works_and_revocation_ends_it(client: FlaskClient, runner: CliRunner,
                                                              db: Database, system: Actor) -> None:
    scim = scim_for(db, client, system, "Oauth")
    result = runner.invoke(main, ["scim", "client", "create", "--org", "oauth", "--json"])
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["token_url"].endswith("/oauth/token") and made["client_secret"]
    token = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": made["client_id"],
                                              "client_secret": made["client_secret"]})
    assert token.status_code == 200, token.json
    assert token.json["token_type"].lower() == "bearer" and 3600 <= token.json["expires_in"] <= 6 * 3600
    bearer = Scim(client, token.json["access_token"], scim.org_id)
    assert bearer.get("/Users").status_code == 200
    from tests.factories import actions

    assert actions(db, scim.org_id)[-1] == "scim_client.token_issued"
    with db.reading() as session:
        from audit.models import AuditEvent

        dumped = json.dumps([e.changes for e in session.query(AuditEvent).all()])
    assert token.json["access_token"] not in dumped and made["client_secret"] not in dumped
    created = bearer.create_user("via-oauth@example.com")
    assert created["userName"] == "via-oauth@example.com"
    # Basic auth works too; a wrong secret does not.
    basic = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(made["client_id"], made["client_secret"]))
    assert basic.status_code == 200
    wrong = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": made["client_id"],
                                              "client_secret": "nope"})
    assert wrong.status_code in (400, 401) and "access_token" not in (wrong.json or {})
    with db.transaction() as session:
        from identity.models import ScimClient

        row = session.query(ScimClient).filter_by(client_id=made["client_id"]).one()
        scim_credentials.revoke_scim_client(session, system, scim.org_id, row.id)
    assert bearer.get("/Users").status_code == 401


def test_tampered_or_foreign_access_token_is_refused(app: Flask, client: FlaskClient, db: Database,
                                                     system: Actor) -> None:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    scim = scim_for(db, client, system, "Forge")
    forged = jwt.encode({"alg": "HS256"}, {"aud": "scim", "sub": "x", "org": scim.org_id, "exp": 9999999999},
                        OctKey.import_key(b"not-our-key-not-our-key-not-our-key"))
    assert Scim(client, forged, scim.org_id).get("/Users").status_code == 401


def test_revoked_scim_token_is_refused(client: FlaskClient, db: Database, system: Actor) -> None:
    scim = scim_for(db, client, system, "Revoked")
    with db.transaction() as session:
        from identity.models import ScimToken

        token = session.query(ScimToken).filter_by(org_id=scim.org_id).one()
        scim_credentials.revoke_scim_token(session, system, scim.org_id, token.id)
    assert scim.get("/Users").status_code == 401


def test_rate_limit_answers_429_with_retry_after(app: Flask, client: FlaskClient, db: Database, system: Actor) -> None:
    app.config["SCIM_RATE_LIMIT"] = 5
    scim = scim_for(db, client, system, "Limited")
    statuses = [scim.get("/ServiceProviderConfig") for _ in range(12)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert limited[0].headers["Retry-After"] == "1" and limited[0].json["status"] == "429"


def test_token_last_used_time_is_saved_at_most_once_a_minute(client: FlaskClient, db: Database,
                                                            system: Actor) -> None:
    import datetime as dt

    from audit.clock import frozen_at
    from identity.models import ScimToken

    def last_used() -> dt.datetime | None:
        with db.reading() as session:
            moment = session.query(ScimToken).filter_by(org_id=scim.org_id).one().last_used_at
        return None if moment is None else moment.replace(tzinfo=dt.UTC)

    scim = scim_for(db, client, system, "Used")
    assert last_used() is None
    start = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    with frozen_at(start):
        assert scim.get("/Users").status_code == 200
    assert last_used() == start
    with frozen_at(start + dt.timedelta(seconds=59)):  # within the minute: a read, no write
        assert scim.get("/Users").status_code == 200
    assert last_used() == start
    with frozen_at(start + dt.timedelta(seconds=61)):
        assert scim.post("/Users", {"userName": "u@used.test"}).status_code == 201
    assert last_used() == start + dt.timedelta(seconds=61)
