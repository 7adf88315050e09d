"""An owner unlinks a member from a persistent NameID that no longer names them (saml.identities).

The case: the IdP's identity of a person changed (re-created at the IdP, or the NameID moved from
the UPN to the object id), so every sign-in is refused `name_id_mismatch`. The owner unlinks
(admin API or `identity saml unlink`), the member's sessions end, and the next sign-in links the
new NameID. Admins may not (IdP trust), nor another org's owner; refusals write nothing.
"""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from audit import Actor
from identity import keys, orgs, users
from identity.errors import NotFound
from identity.models import SsoSession
from identity.service import run
from identity.web import cookies
from identity.web.cli import main
from saml import identities
from tests.factories import counts, provision
from tests.saml.conftest import IDP_ENTITY_ID, Sso
from tests.saml.test_persistent_identity import _events, _identities, _me, _sign_in


def _key(sso: Sso, system: Actor, user_id: str) -> dict[str, str]:
    with sso.db.transaction() as session:
        key = keys.create_api_key(session, system, sso.org.org.id, user_id=user_id, team_id=sso.org.default_team_id,
                                  name="admin", scopes=["admin"])
    return {"Authorization": f"Bearer {key.secret}"}


def _sessions_of(sso: Sso, user_id: str) -> int:
    with sso.db.reading() as session:
        return session.scalar(select(func.count()).where(SsoSession.user_id == user_id)) or 0


def _path(sso: Sso, user_id: str, slug: str | None = None) -> str:
    return f"/api/v1/orgs/{slug or sso.org.org.slug}/members/{user_id}/sso-identities"


def test_an_owner_unlinks_a_changed_identity_and_the_next_sign_in_links_the_new_one(sso: Sso, system: Actor) -> None:
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    owner = _key(sso, system, sso.org.owner.id)
    assert _sign_in(sso, "00u-OLD", "ann@acme.test").status_code == 303 and _me(sso) == ann.id
    sso.client.delete_cookie(cookies.COOKIE)
    assert _sign_in(sso, "0oa-NEW", "ann@acme.test").status_code == 403  # name_id_mismatch
    assert _sessions_of(sso, ann.id) == 1

    listed = sso.client.get(_path(sso, ann.id), headers=owner)
    assert listed.status_code == 200
    assert [(i["idp_entity_id"], i["name_id"]) for i in listed.json["identities"]] == [(IDP_ENTITY_ID, "00u-OLD")]
    unlinked = sso.client.delete(_path(sso, ann.id), headers=owner)
    assert unlinked.status_code == 200 and [i["name_id"] for i in unlinked.json["unlinked"]] == ["00u-OLD"]
    event = _events(sso, "sso.identity_unlinked")[-1]
    assert (event.target_id, event.changes, event.actor_type) == \
        (ann.id, {"idp_entity_id": IDP_ENTITY_ID, "name_id": "00u-OLD"}, "api_key")
    assert _identities(sso) == set() and _sessions_of(sso, ann.id) == 0

    assert _sign_in(sso, "0oa-NEW", "ann@acme.test").status_code == 303 and _me(sso) == ann.id
    assert _identities(sso) == {(IDP_ENTITY_ID, "0oa-new", ann.id)}
    assert sso.client.get(_path(sso, ann.id), headers=owner).json["identities"][0]["name_id"] == "0oa-NEW"


def test_unlinking_a_member_with_no_link_is_404_and_writes_nothing(sso: Sso, system: Actor) -> None:
    bob = provision(sso.db, system, sso.org.org.id, "bob@acme.test")
    owner = _key(sso, system, sso.org.owner.id)
    before = counts(sso.db)
    answer = sso.client.delete(_path(sso, bob.id), headers=owner)
    assert answer.status_code == 404 and answer.content_type == "application/problem+json"
    assert counts(sso.db) == before


def test_an_admin_and_another_orgs_owner_may_not_unlink(sso: Sso, system: Actor) -> None:
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    admin = provision(sso.db, system, sso.org.org.id, "admin@acme.test", role="admin")
    assert _sign_in(sso, "00u-ANN", "ann@acme.test").status_code == 303
    with sso.db.transaction() as session:
        globex = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
        rival = keys.create_api_key(session, system, globex.org.id, user_id=globex.owner.id,
                                    team_id=globex.default_team_id, name="rival", scopes=["admin"])
    admin_headers, rival_headers = _key(sso, system, admin.id), {"Authorization": f"Bearer {rival.secret}"}
    before = counts(sso.db)
    refused = sso.client.delete(_path(sso, ann.id), headers=admin_headers)
    assert refused.status_code == 403 and refused.content_type == "application/problem+json"
    assert sso.client.delete(_path(sso, ann.id), headers=rival_headers).status_code in (403, 404)
    assert sso.client.delete(_path(sso, ann.id, slug="globex"), headers=rival_headers).status_code == 404
    assert sso.client.get(_path(sso, ann.id, slug="globex"), headers=rival_headers).status_code == 404
    assert counts(sso.db) == before and _identities(sso) == {(IDP_ENTITY_ID, "00u-ann", ann.id)}
    # An admin may read which identity signs in as a member (IdP trust: read).
    assert sso.client.get(_path(sso, ann.id), headers=admin_headers).status_code == 200


def test_identity_saml_unlink(sso: Sso, system: Actor, runner: CliRunner) -> None:
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert _sign_in(sso, "00u-ANN", "ann@acme.test").status_code == 303
    done = runner.invoke(main, ["saml", "unlink", "--org", "acme", "--user", "ANN@acme.test"])
    assert done.exit_code == 0, done.output
    assert "unlinked from NameID '00u-ANN'" in done.output and _identities(sso) == set()
    assert _events(sso, "sso.identity_unlinked")[-1].actor_type == "system"
    again = runner.invoke(main, ["saml", "unlink", "--org", "acme", "--user", "ann@acme.test"])
    assert again.exit_code == 1 and "linked to no IdP identity" in again.output
    nobody = runner.invoke(main, ["saml", "unlink", "--org", "acme", "--user", "nobody@acme.test"])
    assert nobody.exit_code == 1 and "no member" in nobody.output
    with sso.db.reading() as session:
        assert users.get_user(session, sso.org.org.id, ann.id).active  # the member stays as they were


@pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")
def test_two_unlinks_at_once_unlink_and_audit_once(sso: Sso, system: Actor) -> None:
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert _sign_in(sso, "00u-ANN", "ann@acme.test").status_code == 303
    owner = Actor("user", sso.org.owner.id, "owner", org_id=sso.org.org.id, role="owner")
    second: list[object] = []

    def unlink_again() -> None:
        try:
            second.append(run(sso.db, owner, identities.unlink_identities, sso.org.org.id, ann.id))
        except NotFound as error:
            second.append(error)

    with sso.db.transaction() as session:  # the first unlink holds the rows it deleted until it commits
        assert [link.name_id for link in identities.unlink_identities(session, owner, sso.org.org.id, ann.id)] == \
            ["00u-ANN"]
        racer = threading.Thread(target=unlink_again)
        racer.start()
        time.sleep(0.5)  # the second one reads, then waits on the first one's row lock
    racer.join(10)
    assert len(second) == 1 and isinstance(second[0], NotFound)
    assert len(_events(sso, "sso.identity_unlinked")) == 1 and _identities(sso) == set()
