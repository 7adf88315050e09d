"""An IdP's change that kept the org's last active owner is shown to the IdP's admin.

DESIGN 3.2 keeps one active owner; from an IdP the change is skipped and audited
(`member.last_owner_protected`) and answered 2xx, so that the IdP does not retry it for ever. The IdP
then reports a success, so the person who unassigned the owner would never learn that they still
sign in: the IdP setup page's provisioning status lists the request among the refusals, with its
2xx status and the reason.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from identity import provisioning_log
from identity.db import Database
from identity.models import User
from scim import provisioning_status
from tests.factories import actions
from tests.identity.test_api_sessions import sign_in
from tests.scim.client import Scim, scim_for


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client(use_cookies=False)


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme")


def _refusals(db: Database, system: Actor, org_id: str) -> list[provisioning_log.Seen]:
    with db.reading() as session:
        return provisioning_log.provisioning_status(session, system, org_id).refusals


def test_a_skipped_deprovisioning_of_the_last_owner_is_among_the_refusals(
        db: Database, system: Actor, scim: Scim, client: FlaskClient) -> None:
    provisioning_status.THROTTLE.last.clear()
    with db.reading() as session:
        owner = session.scalars(select(User).where(User.org_id == scim.org_id)).one()
    answer = scim.patch(f"/Users/{owner.id}", [{"op": "replace", "path": "active", "value": False}])
    assert answer.status_code == 200 and answer.json["active"] is True
    [deactivation] = _refusals(db, system, scim.org_id)
    assert (deactivation.method, deactivation.route, deactivation.status) == ("PATCH", "/scim/v2/Users/<user_id>", 200)
    assert deactivation.outcome == "refused" and deactivation.request_id == answer.headers["X-Request-Id"]
    assert deactivation.reason == "kept: the org's last active owner: the deactivation was skipped (owner@acme.test)"
    assert scim.delete(f"/Users/{owner.id}").status_code == 204
    deletion = _refusals(db, system, scim.org_id)[0]
    assert (deletion.method, deletion.status) == ("DELETE", 204) and "the deletion was skipped" in (deletion.reason or "")
    assert actions(db, scim.org_id)[-2:] == ["member.last_owner_protected"] * 2
    page = client.get("/console/idp", headers={"Cookie": sign_in(db, owner.id).cookie}).get_data(as_text=True)
    assert "kept: the org&#39;s last active owner: the deletion was skipped" in page


def test_an_ordinary_deactivation_is_no_refusal(db: Database, system: Actor, scim: Scim) -> None:
    provisioning_status.THROTTLE.last.clear()
    user = scim.create_user("dev@acme.test")
    assert scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "active", "value": False}]).status_code == 200
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    assert _refusals(db, system, scim.org_id) == []
