"""Hostile review of docs/audit.md's promises to an auditor (session 23).

docs/audit.md section 6, "Reconciling the log with the data": "A change made with SQL on the
domain tables, around the services, leaves the chain intact and the data wrong. So `verify`
without FILE then replays the org's retained events ... and compares every row of the org's domain
tables with it", and section 9 (threat model): reconciliation finds a change made with SQL around
the services "when it changed the current state". The list of what is not reconciled names the
SAML connection, sessions, SCIM tokens' last-used time and the billing cycle dates; nothing else.

Each test makes one such change as a database insider would (one UPDATE), shows over real HTTP
that it changed what the service does, and runs the real `identity audit verify` as a subprocess.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from flask import Flask
from sqlalchemy import update

from audit import Actor, clock
from identity import keys, tokens
from identity.db import Database
from identity.models import ApiKey
from identity.orgs import NewOrg
from tests.live import serving

ROOT = Path(__file__).resolve().parents[2]


def verify(cli_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`identity audit verify --org acme`, as an auditor runs it."""
    env = {"PATH": os.environ.get("PATH", ""), **cli_env}
    return subprocess.run([sys.executable, "-c", "import sys; from identity.web.cli import main; "
                           "sys.argv[0] = 'identity'; main()", "audit", "verify", "--org", "acme"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def whoami(origin: str, secret: str) -> int:
    """The status of `GET /api/v1/key` with this secret: 200 when the service takes it."""
    request = urllib.request.Request(origin + "/api/v1/key", headers={"Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def owner_key(db: Database, acme: NewOrg, system: Actor) -> keys.Issued:
    with db.transaction() as session:
        return keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                   team_id=acme.default_team_id, name="ci", scopes=["admin"])


def insider(db: Database, key_id: str, **values: object) -> None:
    with db.transaction() as session:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(**values))


def test_a_planted_secret_under_an_owners_key_is_found(app: Flask, db: Database, acme: NewOrg, system: Actor,
                                                      cli_env: dict[str, str]) -> None:
    issued = owner_key(db, acme, system)
    planted = f"{issued.prefix}_known-to-the-insider-only"
    insider(db, issued.id, secret_hash=tokens.digest(planted))
    with serving(app, "s23-planted") as origin:
        assert (whoami(origin, planted), whoami(origin, issued.secret)) == (200, 401)  # the key is the insider's now
    done = verify(cli_env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"api_key {issued.id} ({issued.prefix}): its stored secret hash is not the one api_key.created" \
        in done.stdout, done.stdout


def test_a_rotated_out_key_revived_by_sql_is_found(app: Flask, db: Database, acme: NewOrg, system: Actor,
                                                  cli_env: dict[str, str]) -> None:
    issued = owner_key(db, acme, system)
    with db.transaction() as session:
        keys.rotate_api_key(session, system, acme.org.id, issued.id, grace_seconds=0)
    with serving(app, "s23-revived") as origin:
        assert whoami(origin, issued.secret) == 401  # rotated out, as the org meant
        insider(db, issued.id, expires_at=clock.now() + dt.timedelta(days=365))
        assert whoami(origin, issued.secret) == 200  # working again
    done = verify(cli_env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"api_key {issued.id} ({issued.prefix}): expires_at is" in done.stdout, done.stdout
