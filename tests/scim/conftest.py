"""A directory of users and groups shared by the read-only filter tests of one backend."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from audit.actor import system_actor
from identity import orgs
from identity.db import Database
from identity.models import IdpGroup, IdpGroupMember
from scim.schema import ENTERPRISE_USER
from tests.conftest import BACKENDS
from tests.factories import provision

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Directory:
    """The org, its users by short name and its groups by display name."""

    db: Database
    org_id: str
    users: dict[str, str]  # short name -> user id
    groups: dict[str, str]  # display name -> group id


def _people() -> list[tuple[str, str, dict]]:
    """(short name, userName, provision kwargs). The org's owner is `owner@acme.test`."""
    return [
        ("babs", "BJensen@Example.com", dict(
            email="bjensen@example.com", external_id="ext-BJ", display_name="Babs Jensen", given_name="Barbara",
            family_name="Jensen", attributes={
                "emails": [{"value": "bjensen@example.com", "type": "work", "primary": True},
                           {"value": "babs@Home.org", "type": "home"}],
                "phoneNumbers": [{"value": "555-1234", "type": "work"}],
                "name": {"middleName": "Ann", "formatted": "Ms. Barbara A Jensen"},
                "title": "Tour Guide", "nickName": "Babs", "x-rank": 12,
                ENTERPRISE_USER: {"employeeNumber": "701984", "department": "Tours", "costCenter": "4130"},
            })),
        ("john", "jsmith", dict(
            email="john@corp.com", external_id="ext-js", display_name="John Smith", given_name="John",
            family_name="Smith", active=False, attributes={
                "emails": [{"value": "john@corp.com", "type": "work", "primary": True},
                           {"value": "j.smith@x.com", "type": "home"}],
                "title": "100%_done \\ engineer",
                ENTERPRISE_USER: {"employeeNumber": "10", "department": "R&D"},
            })),
        ("legacy", "legacy", dict(email="Legacy@Old.org", attributes={"title": ""})),
        ("quote", 'quote"man', dict(email=None, display_name='He said "hi"', attributes={
            "emails": [{"value": "q@x.com", "type": "home"}], "phoneNumbers": "not a list",
            ENTERPRISE_USER: {"employeeNumber": 9, "department": None, "manager": {"value": "MGR-1"}},
        })),
    ]


@pytest.fixture(scope="module", params=BACKENDS)
def directory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    """Users and groups committed once per backend and module; tests only read them."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("scim") / "identity.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database(
            f"test_scim_{uuid.uuid4().hex[:12]}", template="template_identity")
    db = Database(url)
    system = system_actor("tests")
    with db.transaction() as session:
        org = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test")
    users = {"owner": org.owner.id}
    for short, user_name, kwargs in _people():
        users[short] = provision(db, system, org.org.id, user_name, **kwargs).id
    groups = {}
    with db.transaction() as session:
        for name, external_id, members in (("Engineering", "eng-1", ["babs", "john"]), ("Empty", None, [])):
            group = IdpGroup(id=str(uuid.uuid4()), org_id=org.org.id, display_name=name, external_id=external_id,
                             attributes={}, created_at=T0, updated_at=T0, version=1)
            session.add(group)
            session.flush()
            session.add_all(IdpGroupMember(group_id=group.id, user_id=users[m]) for m in members)
            groups[name] = group.id
    yield Directory(db, org.org.id, users, groups)
    db.dispose()
