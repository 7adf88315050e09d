"""The gateway's way in: a wrong or revoked gateway credential is a 401 whatever the body, on the key
check as on `POST /api/v1/usage`, and the key check counts it as `unauthenticated` (README, "Metrics
for operators"). Over real HTTP.

From a hostile review of the machine ways in: the docstring says what the service did.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from flask import Flask

from audit import Actor
from identity import gateway
from identity.db import Database
from identity.web import metrics
from tests.live import serving


@pytest.fixture
def served(app: Flask, db: Database, system: Actor) -> Iterator[tuple[str, str]]:
    """The app on 127.0.0.1, and a gateway credential that has been revoked."""
    with db.transaction() as session:
        issued = gateway.create_credential(session, system, name="old gateway")
    with db.transaction() as session:
        assert gateway.revoke_credential(session, system, issued.id)
    with serving(app, "gateway-credential") as origin:
        yield origin, issued.secret


def _post(origin: str, path: str, body: bytes, credential: str) -> tuple[int, dict]:
    parts = urlsplit(origin)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {credential}",
                                                       "Content-Type": "application/json"})
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def _unauthenticated() -> float:
    return float(metrics.families().registry.get_sample_value(
        "identity_key_checks_total", {"answer": "unauthenticated"}) or 0)


@pytest.mark.parametrize("body", [b'{"key": 5}', b"not json"], ids=["key-not-a-string", "not-json"])
@pytest.mark.parametrize("credential", ["revoked", "made-up"])
def test_a_wrong_gateway_credential_is_401_whatever_the_key_checks_body(
        served: tuple[str, str], body: bytes, credential: str) -> None:
    """The key check's view read and judged the body before it verified the credential (its comment
    says "the credential first: a wrong one is 401 whatever the body"): a revoked or made-up
    gateway credential with a malformed body got a 400 describing the body, and the attempt was
    not counted in `identity_key_checks_total{answer="unauthenticated"}`. `POST /api/v1/usage`,
    with the same credential and the same bodies, answers 401."""
    origin, revoked = served
    presented = revoked if credential == "revoked" else "gw_000000000000_made-up"
    assert _post(origin, "/api/v1/usage", body, presented)[0] == 401  # usage: the credential first
    before = _unauthenticated()
    status, problem = _post(origin, "/api/v1/keys/verify", body, presented)
    assert (status, problem.get("code")) == (401, "unauthenticated"), problem
    assert _unauthenticated() == before + 1
