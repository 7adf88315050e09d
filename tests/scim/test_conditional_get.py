"""Conditional GET (RFC 7644 section 3.14): If-None-Match with the current ETag is 304, a stale one 200."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.scim.client import Scim, scim_for


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme")


@pytest.mark.parametrize("kind", ["Users", "Groups"])
def test_if_none_match_is_304_while_current_and_200_once_stale(scim: Scim, kind: str) -> None:
    if kind == "Users":
        created = scim.create_user("nina@example.com")
        change = {"op": "replace", "path": "displayName", "value": "Nina"}
    else:
        created = scim.create_group("Ops", [scim.create_user("olga@example.com")["id"]])
        change = {"op": "replace", "path": "displayName", "value": "Operations"}
    path = f"/{kind}/{created['id']}"
    current = scim.get(path).headers["ETag"]

    unchanged = scim.get(path, **{"If-None-Match": current})
    assert unchanged.status_code == 304 and unchanged.data == b""
    assert unchanged.headers["ETag"] == current
    assert scim.get(path, **{"If-None-Match": f'W/"0", {current}'}).status_code == 304
    assert scim.get(path, **{"If-None-Match": current.removeprefix("W/")}).status_code == 304  # weak comparison
    assert scim.get(path, **{"If-None-Match": "*"}).status_code == 304

    assert scim.patch(path, [change]).status_code in (200, 204)
    stale = scim.get(path, **{"If-None-Match": current})
    assert stale.status_code == 200 and stale.json["id"] == created["id"]
    assert stale.headers["ETag"] != current and stale.json["meta"]["version"] == stale.headers["ETag"]


def test_if_none_match_on_a_missing_resource_is_still_404(scim: Scim) -> None:
    assert scim.get("/Users/00000000-0000-0000-0000-000000000000", **{"If-None-Match": "*"}).status_code == 404


def test_service_provider_config_says_etags_are_supported(scim: Scim) -> None:
    assert scim.get("/ServiceProviderConfig").json["etag"] == {"supported": True}
