"""ACS verifies with the org's connection as this process cached it; the database still decides.

A cached connection saves a transaction per sign-in. It must never let through what the stored
connection refuses (a retired certificate, SSO settings changed since), nor refuse what it accepts
(a certificate the IdP just rolled to).
"""

from __future__ import annotations

from typing import Any

import pytest

from saml import configuration, service
from tests.saml.conftest import Sso, configure
from tests.saml.idp import KeyPair, TestIdP
from tests.saml.test_refusals import assert_refused


def test_a_retired_certificate_is_refused_although_the_cache_still_trusts_it(sso: Sso, other_keys: KeyPair) -> None:
    assert sso.post(sso.response(name_id="ann@acme.test")).status_code == 303  # caches the connection
    sso.sign_out()
    configure(sso.db, sso.org.org.slug, TestIdP(sso.idp.entity_id, other_keys))  # the old key is retired
    assert_refused(sso, sso.post(sso.response(name_id="ann@acme.test")), "invalid_signature")


def test_a_newly_rolled_certificate_is_accepted_although_the_cache_does_not_know_it(sso: Sso) -> None:
    assert sso.post(sso.response(name_id="ann@acme.test")).status_code == 303
    rolled = KeyPair.make("rolled over")
    configure(sso.db, sso.org.org.slug, TestIdP(sso.idp.entity_id, rolled))
    assert sso.post(sso.response(name_id="ann@acme.test", signer=rolled)).status_code == 303


def test_settings_changed_since_caching_apply_at_once(sso: Sso) -> None:
    assert sso.post(sso.response(name_id="ann@acme.test")).status_code == 303
    sso.sign_out()
    configure(sso.db, sso.org.org.slug, sso.idp, allow_idp_initiated=False, jit=False)
    assert_refused(sso, sso.post(sso.response(name_id="ann@acme.test")), "idp_initiated_not_allowed")


def test_a_connection_that_keeps_changing_refuses_instead_of_retrying_forever(
        sso: Sso, monkeypatch: pytest.MonkeyPatch) -> None:
    def always_changed(_session: Any, connection: Any) -> None:
        raise configuration.ConnectionChanged(connection.org_id)

    monkeypatch.setattr(service, "confirm_connection", always_changed)
    answer = sso.post(sso.response(name_id="ann@acme.test"))
    assert answer.status_code == 409
    assert_refused(sso, answer, "connection_changed")
