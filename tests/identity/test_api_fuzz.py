"""Generated requests against every admin API operation in /openapi.json: never a 5xx, every 4xx
a problem, every answer as documented, a request the document forbids is refused, a refused write
changes nothing, and no key of one org reaches another org.

Schemathesis reads the document /openapi.json serves (`identity.web.openapi.document`) and builds
bodies, path parameters and query strings from it: valid ones and ones that break the schema
(wrong types, missing and unknown fields and parameters). Path ids are sometimes generated junk
and sometimes the ids of real resources, so that the writes get past "not found". Operations are
drawn through `operation.as_strategy()` inside plain Hypothesis tests, because schemathesis's own
pytest loader (`from_fixture`) fails under pytest 9.2 and the per-test `db` fixture needs a
function-scoped app. The examples come from a fixed seed (`derandomize`), so CI runs the same cases
every time; `API_FUZZ_EXAMPLES=500` runs a longer search locally.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, inspect, select

from audit import Actor
from audit.models import AuditEvent
from identity import keys, mappings, orgs, scim_credentials, teams
from identity.db import Database
from identity.models import ApiKey, GroupMapping, Invitation, Org, RoleGrant, ScimToken, Team, User
from identity.orgs import NewOrg
from identity.web.openapi import document
from tests.factories import provision

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "15"))  # 25 until 2026-12-07: the suite passed 14.5 min
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
ISOLATION = settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))  # each example reads the whole org twice
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ID_PARAMETERS = ("user_id", "team_id", "key_id", "token_id", "mapping_id")


@dataclass
class Tenant:
    """An org with its owner's admin key, and one resource of each kind for path ids to name."""

    org: NewOrg
    key: str
    key_id: str
    make: dict[str, Callable[[], str]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def target(self, parameter: str) -> str:
        """The id of a live resource of that kind (made again after a test deleted it)."""
        if parameter not in self.ids:
            self.ids[parameter] = self.make[parameter]()
        return self.ids[parameter]


def _tenant(db: Database, system: Actor, name: str) -> Tenant:
    with db.transaction() as session:
        made = orgs.create_org(session, system, name, owner_email=f"owner@{name.lower()}.test")
        issued = keys.create_api_key(session, system, made.org.id, user_id=made.owner.id,
                                     team_id=made.default_team_id, name="admin", scopes=["admin"])
    tenant = Tenant(made, issued.secret, issued.id)
    org_id, numbers = made.org.id, iter(range(10**6))

    def in_session(build: Callable[..., Any]) -> Callable[[], str]:
        def made_id() -> str:
            with db.transaction() as session:
                return str(build(session, next(numbers)).id)
        return made_id

    tenant.make = {
        "user_id": lambda: provision(db, system, org_id, f"target{next(numbers)}@{name.lower()}.test").id,
        "team_id": in_session(lambda s, n: teams.create_team(s, system, org_id, f"Target {n}")),
        "key_id": in_session(lambda s, n: keys.create_api_key(s, system, org_id, user_id=made.owner.id,
                                                              team_id=made.default_team_id, name=f"k{n}",
                                                              scopes=["inference"])),
        "token_id": in_session(lambda s, n: scim_credentials.create_scim_token(s, system, org_id, name=f"t{n}")),
        "mapping_id": in_session(lambda s, n: mappings.create_mapping(s, system, org_id,
                                                                    group_external_id=f"g{n}", org_role="viewer")),
    }
    return tenant


@pytest.fixture
def tenants(db: Database, system: Actor) -> dict[str, Tenant]:
    return {"a": _tenant(db, system, "Alpha"), "b": _tenant(db, system, "Beta")}


DOCUMENT = document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}


def _events(db: Database, org_id: str) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.org_id == org_id)) or 0


def _state(db: Database, org_id: str) -> dict[str, Any]:
    """What another org's request must never change: the org's rows, its settings, its log's length."""
    with db.reading() as session:
        rows: dict[str, Any] = {model.__tablename__: sorted(
            tuple(repr(getattr(row, attr.key)) for attr in inspect(model).column_attrs)
            for row in session.scalars(select(model).where(model.org_id == org_id)))
            for model in (User, Team, RoleGrant, ApiKey, ScimToken, GroupMapping, Invitation)}
        org = session.get(Org, org_id)
        rows["settings"] = {name: getattr(org, name) for name in orgs.SETTINGS}
    return {"events": _events(db, org_id), **rows}


def _integer(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) == 1 and _integer(value[0])
    return not isinstance(value, bool) and re.fullmatch(r"-?[0-9]+", str(value)) is not None


def _breaks_schema(case: schemathesis.Case) -> str | None:
    """What in the request as sent breaks the document (schemathesis's own verdict counts what it
    meant to break, which is not always what went out)."""
    spec = DOCUMENT["paths"][case.operation.path][case.method.lower()]
    declared = {p["name"]: p["schema"] for p in spec.get("parameters", []) if p["in"] == "query"}
    for name, value in (case.query or {}).items():
        if value is None or value == []:
            continue  # not sent at all
        if name not in declared:
            return f"unknown query parameter {name!r}"
        if declared[name].get("type") == "integer" and not _integer(value):
            return f"{name}={value!r} is not one integer"
        if "enum" in declared[name] and value not in declared[name]["enum"]:
            return f"{name}={value!r} is not one of {declared[name]['enum']}"
    body = spec.get("requestBody")
    if body is None:
        return None
    if case.body is NOT_SET:
        return "no body"
    schema = {**body["content"]["application/json"]["schema"], "components": DOCUMENT["components"]}
    return None if jsonschema_rs.validator_for(schema).is_valid(case.body) else f"body {case.body!r}"


def _check(response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Below 500, as documented, and a 4xx is problem JSON naming its own status."""
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        media = {k.lower(): v for k, v in response.headers.items()}["content-type"][0]
        assert media.startswith("application/problem+json"), media
        problem = response.json()
        assert problem["status"] == response.status_code and problem["detail"] and problem["code"]


def _aim(data: st.DataObject, operation: APIOperation, tenant: Tenant, org: str) -> dict[str, str]:
    """Path parameters: the org's slug or id (or generated junk), and real or generated resource ids."""
    names = {p.name for p in operation.path_parameters}
    fixed: dict[str, str] = {}
    if "org" in names and org != "generated":
        fixed["org"] = tenant.org.org.slug if org == "slug" else tenant.org.org.id
    if data.draw(st.booleans(), "real ids"):
        fixed |= {name: tenant.target(name) for name in ID_PARAMETERS if name in names}
    return fixed


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@FUZZ
@given(data=st.data())
def test_every_operation_answers_as_documented(app: Flask, db: Database, tenants: dict[str, Tenant], label: str,
                                               data: st.DataObject) -> None:
    alpha, operation = tenants["a"], OPERATIONS[label]
    fixed = _aim(data, operation, alpha, data.draw(st.sampled_from(["slug", "id", "slug", "id", "generated"]), "org"))
    mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]), "mode")
    case = data.draw(operation.as_strategy(mode, path_parameters=fixed or None), "case")
    before = _events(db, alpha.org.org.id)
    response = case.call(app=app, headers={"Authorization": f"Bearer {alpha.key}"})
    _check(response, case)
    event(f"{case.method} {response.status_code}")
    if response.status_code < 400:
        broken = _breaks_schema(case)
        assert broken is None, f"accepted a request the document forbids: {broken}"
        if case.method == "DELETE":
            alpha.ids = {k: v for k, v in alpha.ids.items() if v not in case.path_parameters.values()}
    elif response.json()["code"] not in ("seat_cap_reached", "last_owner"):  # refusals audited on purpose
        assert _events(db, alpha.org.org.id) == before, f"refused {case.method} {case.path} changed something"


SCOPED = sorted(label for label, operation in OPERATIONS.items() if "{org}" in operation.path)


@pytest.mark.parametrize("label", SCOPED)
@ISOLATION
@given(data=st.data())
def test_a_key_of_one_org_never_reaches_another(app: Flask, db: Database, tenants: dict[str, Tenant], label: str,
                                                data: st.DataObject) -> None:
    """Beta's owner names Alpha (by slug or id), or Alpha's resources under Beta's own org: always 404."""
    alpha, beta, operation = tenants["a"], tenants["b"], OPERATIONS[label]
    names = {p.name for p in operation.path_parameters}
    fixed = {name: alpha.target(name) for name in ID_PARAMETERS if name in names}
    whose = data.draw(st.sampled_from(["alpha slug", "alpha id", "beta slug"] if fixed else ["alpha slug", "alpha id"]))
    fixed["org"] = {"alpha slug": alpha.org.org.slug, "alpha id": alpha.org.org.id, "beta slug": beta.org.org.slug}[whose]
    case = data.draw(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed), "case")
    before = _state(db, alpha.org.org.id)
    response = case.call(app=app, headers={"Authorization": f"Bearer {beta.key}"})
    _check(response, case)
    refused_as_bad_input = response.status_code == 400 and "\\u0000" in json.dumps([case.query, case.body],
                                                                                 default=str)  # NUL: before any lookup
    assert response.status_code == 404 or refused_as_bad_input, (whose, response.json())
    assert _state(db, alpha.org.org.id) == before
