"""A SCIM client over Flask's test client: what an IdP sends, with its bearer token."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from audit import Actor
from identity import orgs, scim_credentials
from identity.db import Database

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@dataclass
class Scim:
    client: FlaskClient
    token: str
    org_id: str

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> TestResponse:
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        return self.client.open(f"/scim/v2{path}", method=method, data=data,
                                headers={"Authorization": f"Bearer {self.token}",
                                         "Content-Type": "application/scim+json", **headers})

    def get(self, path: str, **headers: str) -> TestResponse:
        return self.request("GET", path, **headers)

    def post(self, path: str, body: Any, **headers: str) -> TestResponse:
        return self.request("POST", path, body, **headers)

    def put(self, path: str, body: Any, **headers: str) -> TestResponse:
        return self.request("PUT", path, body, **headers)

    def patch(self, path: str, operations: list[dict[str, Any]], **headers: str) -> TestResponse:
        return self.request("PATCH", path, {"schemas": [PATCH], "Operations": operations}, **headers)

    def delete(self, path: str, **headers: str) -> TestResponse:
        return self.request("DELETE", path, **headers)

    def create_user(self, user_name: str, **extra: Any) -> dict[str, Any]:
        body = {"schemas": [USER], "userName": user_name, "active": True,
                "emails": [{"value": user_name, "type": "work", "primary": True}], **extra}
        response = self.post("/Users", body)
        assert response.status_code == 201, response.json
        return response.json

    def create_group(self, name: str, members: list[str] = (), **extra: Any) -> dict[str, Any]:
        body = {"schemas": [GROUP], "displayName": name, "members": [{"value": m} for m in members], **extra}
        response = self.post("/Groups", body)
        assert response.status_code == 201, response.json
        return response.json


def scim_for(db: Database, client: FlaskClient, system: Actor, name: str, **settings: Any) -> Scim:
    """Create an org and a SCIM token for it."""
    with db.transaction() as session:
        new = orgs.create_org(session, system, name, owner_email=f"owner@{name.lower()}.test", **settings)
        token = scim_credentials.create_scim_token(session, system, new.org.id)
    return Scim(client, token.secret, new.org.id)
