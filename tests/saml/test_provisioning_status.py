"""SAML sign-ins in the org's provisioning status (identity.provisioning_log): the IT admin sees
when people last signed in, and why a sign-in was refused."""

from __future__ import annotations

from audit import Actor
from identity import provisioning_log
from tests.saml.conftest import Sso
from tests.saml.idp import KeyPair


def test_saml_sign_ins_and_refusals_are_kept(sso: Sso, other_keys: KeyPair, system: Actor) -> None:
    assert sso.sp_login(signer=other_keys).status_code == 400
    assert sso.sp_login(name_id="ann@acme.test").status_code == 303
    with sso.db.reading() as session:
        status = provisioning_log.provisioning_status(session, system, sso.org.org.id)
    (refused,) = status.refusals
    assert refused.protocol == "saml" and refused.route == f"/saml/{sso.org.org.slug}/acs"
    assert refused.reason and refused.reason.startswith("invalid_signature")
    assert status.last_saml is not None and status.last_saml.status == 303 and status.saml_users == 1
