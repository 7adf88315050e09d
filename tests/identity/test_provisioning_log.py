"""The provisioning status (identity.provisioning_log): the newest SCIM requests and SAML sign-ins of
an org, refused ones with their reason, bounded, never a secret; written by the adapters."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from audit import Actor
from identity import provisioning_log, scim_credentials
from identity.db import Database
from identity.errors import PermissionDenied
from identity.models import ProvisioningEvent
from identity.orgs import NewOrg
from identity.provisioning_log import KEEP, Attempt
from tests.scim.client import Scim, scim_for


def _as(org: NewOrg, role: str, org_id: str | None = None) -> Actor:
    return Actor("user", org.owner.id, "someone", org_id=org_id or org.org.id, role=role)


def _status(db: Database, org: NewOrg) -> provisioning_log.ProvisioningStatus:
    with db.reading() as session:
        return provisioning_log.provisioning_status(session, _as(org, "admin"), org.org.id)


def _rows(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(ProvisioningEvent)) or 0


def test_only_the_newest_refusals_and_successes_are_kept(db: Database, acme: NewOrg) -> None:
    for n in range(KEEP["refused"] + 3):
        with db.transaction() as session:
            provisioning_log.note(session, acme.org.id, Attempt("scim", "POST", "/scim/v2/Users", 400, f"bad {n}"))
    for _ in range(KEEP["success"] + 2):
        with db.transaction() as session:
            provisioning_log.note(session, acme.org.id, Attempt("scim", "GET", "/scim/v2/Users", 200))
    status = _status(db, acme)
    assert [seen.reason for seen in status.refusals] == [f"bad {n}" for n in range(KEEP["refused"] + 2, 2, -1)]
    assert _rows(db) == KEEP["refused"] + KEEP["success"]
    assert status.last_scim is not None and status.last_scim.status == 200 and status.last_saml is None


def test_a_reason_never_keeps_a_secret(db: Database, acme: NewOrg, system: Actor) -> None:
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    user_id = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
    reason = f"the body said {token} and eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln for {user_id} and " + "x" * 900
    with db.transaction() as session:
        provisioning_log.note(session, acme.org.id, Attempt("scim", "POST", "/scim/v2/Users", 400, reason))
    (seen,) = _status(db, acme).refusals
    assert seen.reason is not None and token not in seen.reason and "eyJ" not in seen.reason
    assert seen.reason == f"the body said [redacted] and [redacted] for {user_id} and [redacted]"
    with db.transaction() as session:
        provisioning_log.note(session, acme.org.id, Attempt("scim", "POST", "/scim/v2/Users", 400, "word " * 300))
    assert len(_status(db, acme).refusals[0].reason or "") == provisioning_log.REASON_LENGTH


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_may_not_read_it(db: Database, acme: NewOrg, role: str) -> None:
    with db.reading() as session, pytest.raises(PermissionDenied):
        provisioning_log.provisioning_status(session, _as(acme, role), acme.org.id)


def test_another_orgs_admin_may_not_read_it(db: Database, acme: NewOrg) -> None:
    with db.reading() as session, pytest.raises(PermissionDenied):
        provisioning_log.provisioning_status(session, _as(acme, "admin", org_id="another-org"), acme.org.id)


def test_a_refused_scim_request_is_kept_with_its_reason(client: FlaskClient, db: Database, system: Actor) -> None:
    scim = scim_for(db, client, system, "Okta shop")
    assert scim.get('/Users?filter=nosuch eq "x"').status_code == 400
    scim.create_user("ann@example.com")
    with db.reading() as session:
        status = provisioning_log.provisioning_status(session, system, scim.org_id)
    (refused,) = status.refusals
    assert refused.protocol == "scim" and refused.status == 400 and refused.route == "/scim/v2/Users"
    assert refused.reason and "nosuch" in refused.reason and refused.credential and "SCIM token" in refused.credential
    assert status.last_scim is not None and status.last_scim.status == 201 and status.last_scim.method == "POST"
    assert status.scim_users == 1 and status.groups == 0


def test_successes_are_kept_at_most_every_few_seconds(client: FlaskClient, db: Database, system: Actor) -> None:
    scim = scim_for(db, client, system, "Busy")
    for _ in range(5):
        assert scim.get("/Users").status_code == 200
    assert _rows(db) == 1


def test_a_revoked_token_is_kept_for_its_org_and_an_unknown_one_nowhere(client: FlaskClient, db: Database,
                                                                       system: Actor) -> None:
    scim = scim_for(db, client, system, "Revoked")
    with db.transaction() as session:
        (token,) = scim_credentials.list_scim_tokens(session, system, scim.org_id)
        scim_credentials.revoke_scim_token(session, system, scim.org_id, token.id)
    answer = scim.get("/Users")
    assert answer.status_code == 401 and answer.json["detail"] == "invalid or revoked SCIM token"  # no more than before
    assert Scim(client, "scim_000000000000_nope", scim.org_id).get("/Users").status_code == 401
    with db.reading() as session:
        (refused,) = provisioning_log.provisioning_status(session, system, scim.org_id).refusals
    assert refused.status == 401 and refused.reason == f"SCIM token SCIM ({token.prefix}) was revoked"
    assert _rows(db) == 1



def test_parallel_notes_stay_bounded_and_never_fail(db: Database, acme: NewOrg) -> None:
    """Many workers keeping refusals at once (an IdP retrying in a loop against several processes)."""
    from concurrent.futures import ThreadPoolExecutor

    def keep(n: int) -> None:
        with db.transaction() as session:
            provisioning_log.note(session, acme.org.id, Attempt("scim", "PATCH", "/scim/v2/Groups/<group_id>", 409,
                                                                f"conflict {n}"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(keep, range(80)))
    assert len(_status(db, acme).refusals) == KEEP["refused"]
    assert _rows(db) <= KEEP["refused"] + 8  # each deletes what is older than its own newest 25; the last ones trim
