"""If-Match (RFC 7644 section 3.14) against a change that commits while the request waits for its lock:
the precondition is checked against the resource as read under the lock, so a request naming the
version before that change answers 412 and changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from audit import Actor
from identity import groups, seats, user_profile
from identity.db import Database
from identity.models import IdpGroup, User
from tests.factories import wait_for_a_lock_wait
from tests.scim.client import ENTERPRISE, GROUP, USER, Scim, scim_for

pytestmark = pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme", included_seats=10)


def _racing(db: Database, first: Callable[[Any], None], request: Callable[[], TestResponse]) -> TestResponse:
    """Run `first` in a transaction that holds its locks while `request` (another thread) waits for
    one of them, then commit it and return what the request answered."""
    answers: list[TestResponse] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            answers.append(request())
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    sender = threading.Thread(target=send)
    with db.transaction() as session:
        first(session)
        sender.start()
        wait_for_a_lock_wait(db, "the request")
    sender.join(30)
    assert not sender.is_alive() and errors == [], errors
    return answers[0]


def _stored(db: Database, user_id: str) -> tuple[str | None, str | None, int]:
    with db.reading() as session:
        user = session.get_one(User, user_id)
        return user.given_name, user.external_id, user.version


def _rename_given(scim: Scim, system: Actor, user_id: str) -> Callable[[Any], None]:
    # A change that shows no new name in a group: it locks the user's row only (LOCK_LIVE_USER).
    return lambda session: user_profile.update_profile(session, system, scim.org_id, user_id, {"given_name": "First"})


def test_a_user_patch_that_waited_for_another_change_answers_412(scim: Scim, db: Database, system: Actor) -> None:
    user = scim.create_user("racing@acme.test")
    etag = scim.get(f"/Users/{user['id']}").headers["ETag"]
    before = _stored(db, user["id"])
    answer = _racing(db, _rename_given(scim, system, user["id"]), lambda: scim.patch(
        f"/Users/{user['id']}", [{"op": "replace", "path": "externalId", "value": "late"}], **{"If-Match": etag}))
    assert answer.status_code == 412, answer.json
    assert _stored(db, user["id"]) == ("First", before[1], before[2] + 1)


def test_a_user_put_that_waited_for_another_change_answers_412(scim: Scim, db: Database, system: Actor) -> None:
    user = scim.create_user("racing@acme.test")
    etag = scim.get(f"/Users/{user['id']}").headers["ETag"]
    before = _stored(db, user["id"])
    body = {"schemas": [USER], "userName": "racing@acme.test", "active": True, "externalId": "late",
            "emails": [{"value": "racing@acme.test", "type": "work", "primary": True}]}
    answer = _racing(db, _rename_given(scim, system, user["id"]),
                     lambda: scim.put(f"/Users/{user['id']}", body, **{"If-Match": etag}))
    assert answer.status_code == 412, answer.json
    assert _stored(db, user["id"]) == ("First", before[1], before[2] + 1)


def test_a_user_deactivation_that_waited_for_another_change_answers_412(
        scim: Scim, db: Database, system: Actor) -> None:
    """A PATCH changing `active` only reaches the member's row through the deactivation's path."""
    user = scim.create_user("racing@acme.test")
    etag = scim.get(f"/Users/{user['id']}").headers["ETag"]
    before = _stored(db, user["id"])
    answer = _racing(db, _rename_given(scim, system, user["id"]), lambda: scim.patch(
        f"/Users/{user['id']}", [{"op": "replace", "path": "active", "value": False}], **{"If-Match": etag}))
    assert answer.status_code == 412, answer.json
    assert _stored(db, user["id"]) == ("First", before[1], before[2] + 1)
    assert scim.get(f"/Users/{user['id']}").json["active"] is True


def test_a_bulk_patch_whose_version_went_stale_while_it_waited_answers_412(
        scim: Scim, db: Database, system: Actor) -> None:
    user = scim.create_user("racing@acme.test")
    etag = scim.get(f"/Users/{user['id']}").headers["ETag"]
    before = _stored(db, user["id"])
    bulk = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "PATCH", "path": f"/Users/{user['id']}", "version": etag,
         "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                  "Operations": [{"op": "replace", "path": f"{ENTERPRISE}:department", "value": "late"}]}}]}
    answer = _racing(db, _rename_given(scim, system, user["id"]), lambda: scim.post("/Bulk", bulk))
    assert answer.status_code == 200, answer.json
    assert answer.json["Operations"][0]["status"] == "412", answer.json
    assert _stored(db, user["id"]) == ("First", before[1], before[2] + 1)


def test_a_group_patch_that_waited_for_a_member_shown_anew_answers_412(
        scim: Scim, db: Database, system: Actor) -> None:
    """A member's new display name moves its groups' versions (identity.group_versions), holding the
    group's row: a PATCH naming the version before waits for the group's lock and reads the new one."""
    user = scim.create_user("member@acme.test")
    group = scim.create_group("Engineering", [user["id"]])
    etag = scim.get(f"/Groups/{group['id']}").headers["ETag"]

    def rename(session: Any) -> None:
        user_profile.update_profile(session, system, scim.org_id, user["id"], {"display_name": "Shown Anew"})

    answer = _racing(db, rename, lambda: scim.patch(
        f"/Groups/{group['id']}", [{"op": "replace", "path": "displayName", "value": "Late"}], **{"If-Match": etag}))
    assert answer.status_code == 412, answer.json
    with db.reading() as session:
        assert session.get_one(IdpGroup, group["id"]).display_name == "Engineering"


def test_a_group_put_that_waited_for_another_change_of_it_answers_412(
        scim: Scim, db: Database, system: Actor) -> None:
    group = scim.create_group("Engineering")
    other = scim.create_user("other@acme.test")
    etag = scim.get(f"/Groups/{group['id']}").headers["ETag"]

    def add(session: Any) -> None:
        groups.add_members(session, system, scim.org_id, group["id"], [other["id"]])

    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Late", "members": []}
    answer = _racing(db, add, lambda: scim.put(f"/Groups/{group['id']}", body, **{"If-Match": etag}))
    assert answer.status_code == 412, answer.json
    shown = scim.get(f"/Groups/{group['id']}").json
    assert (shown["displayName"], [m["value"] for m in shown["members"]]) == ("Engineering", [other["id"]])


def _shown_anew_while(db: Database, scim: Scim, system: Actor, user_id: str,
                      request: Callable[[], TestResponse]) -> TestResponse:
    """A member's new display name holds the org's lock, then moves its groups' versions (their
    rows); `request` starts once the org is held and must not hold a group it then waits the org for."""
    answers: list[TestResponse] = []
    sender = threading.Thread(target=lambda: answers.append(request()))
    with db.transaction() as session:
        seats.lock_org(session, scim.org_id)  # the new name's first lock (identity.user_profile._groups_show_anew)
        sender.start()
        wait_for_a_lock_wait(db, "the request")
        user_profile.update_profile(session, system, scim.org_id, user_id, {"display_name": "Shown Anew"})
    sender.join(30)
    assert not sender.is_alive()
    return answers[0]


def test_a_group_put_renaming_it_racing_a_member_shown_anew_does_not_deadlock(
        scim: Scim, db: Database, system: Actor) -> None:
    """The PUT's If-Match is checked by the domain under the group's lock, taken after the org's for
    a new name: locked first by the view, the PUT waited for the org holding the group (a 500)."""
    user = scim.create_user("member@acme.test")
    group = scim.create_group("Engineering", [user["id"]])
    body = {"schemas": [GROUP], "displayName": "Renamed", "members": [{"value": user["id"]}]}
    answer = _shown_anew_while(db, scim, system, user["id"], lambda: scim.put(f"/Groups/{group['id']}", body))
    assert answer.status_code == 200, answer.json
    assert answer.json["displayName"] == "Renamed"


def test_a_group_patch_renaming_it_racing_a_member_shown_anew_does_not_deadlock(
        scim: Scim, db: Database, system: Actor) -> None:
    user = scim.create_user("member@acme.test")
    group = scim.create_group("Engineering", [user["id"]])
    answer = _shown_anew_while(db, scim, system, user["id"], lambda: scim.patch(
        f"/Groups/{group['id']}", [{"op": "replace", "value": {"displayName": "Renamed"}}]))
    assert answer.status_code == 204, answer.json
    assert scim.get(f"/Groups/{group['id']}").json["displayName"] == "Renamed"
