"""A key answered `revoked` because its holder left its team stays revoked (README, the key check;
DESIGN.md 3.5, 3.7): leaving a team by an IdP group (or a rule) must not be a revocation that comes
undone when the holder is put back."""

from __future__ import annotations

from flask.testing import FlaskClient

from audit import Actor
from identity import group_membership, groups, keys
from identity.db import Database
from identity.orgs import NewOrg
from tests.factories import provision


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_a_key_revoked_by_its_holder_leaving_the_team_stays_revoked_when_they_come_back(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """README, the key check: `revoked` is "revoked for good (by hand, its member removed or gone from the
    team, team deleted)"; DESIGN 3.5: keys revoked for any reason but deactivation stay revoked. A member
    the IdP takes out of a group loses the group's team, and their key for it answers revoked; when the
    IdP puts them back (or an admin's rule gives them the team again) the same secret must not work again.
    The admin API's list must not call it active meanwhile either."""
    dev = provision(db, system, acme.org.id, "dev@acme.test", source="scim")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="Prod engineers",
                                    external_id="00gProd", member_ids=[dev.id])
        team_id = session.get(type(group), group.id).team_id
        devs_key = keys.create_api_key(session, system, acme.org.id, user_id=dev.id, team_id=team_id,
                                       name="prod", scopes=["inference"])
        owners_key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                         team_id=acme.default_team_id, name="admin", scopes=["admin"])
    assert client.get("/api/v1/key", headers=bearer(devs_key.secret)).status_code == 200
    with db.transaction() as session:  # the IdP takes dev out of the group: out of its team
        group_membership.remove_members(session, system, acme.org.id, group.id, [dev.id])
    gone = client.get("/api/v1/key", headers=bearer(devs_key.secret))
    assert gone.status_code == 401  # "the key's member has left its team": revoked
    listed = client.get(f"/api/v1/orgs/{acme.org.slug}/api-keys", headers=bearer(owners_key.secret)).get_json()
    [entry] = [k for k in listed["keys"] if k["id"] == devs_key.id]
    with db.transaction() as session:  # and puts them back
        group_membership.add_members(session, system, acme.org.id, group.id, [dev.id])
    back = client.get("/api/v1/key", headers=bearer(devs_key.secret))
    assert back.status_code == 401, f"a key revoked when its holder left the team works again: {back.get_json()}"
    assert entry["state"] == "revoked", f"the admin API lists a key the key check refuses as {entry['state']}"
