"""Our SP private keys are sealed at rest under SECRET_KEY (saml.sp_keys, issue 14): what a copy of
the database holds, sealing at first use and by migration 0013c, and rotating SECRET_KEY."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from identity.db import Database
from identity.migrate import upgrade
from identity.web.app import create_app
from saml import sp_keys
from saml.cli import configure_org
from saml.cli import saml as saml_cli
from saml.models import SamlConnection
from tests.saml.conftest import Sso, configure
from tests.saml.idp import TestIdP

PEM_HEADER = "-----BEGIN PRIVATE KEY-----"


def _stored(db: Database, org_id: str) -> str:
    with db.reading() as session:
        return session.get_one(SamlConnection, org_id).sp_key_pem


def _sp_cert(db: Database, org_id: str) -> x509.Certificate:
    with db.reading() as session:
        return x509.load_pem_x509_certificate(session.get_one(SamlConnection, org_id).sp_cert_pem.encode())


def test_the_database_holds_no_usable_private_key_once_the_service_used_it(sso: Sso) -> None:
    """The attacker's move: read saml_connections from a backup and sign or decrypt as our SP."""
    assert PEM_HEADER in _stored(sso.db, sso.org.org.id)  # as the test helper configures it, like an old row
    sso.start_login()  # the first use seals it
    stored = _stored(sso.db, sso.org.org.id)
    assert stored.startswith("sealed:v1:") and PEM_HEADER not in stored
    assert sp_keys.sealed_under("test-secret-key-32-characters-min", stored)
    with pytest.raises(sp_keys.KeyUnavailable):
        sp_keys.unseal(["another secret"], sso.org.org.id, stored)


def test_encrypted_assertions_and_signed_requests_still_work_with_a_sealed_key(sso: Sso) -> None:
    configure(sso.db, sso.org.org.slug, sso.idp, want_assertions_encrypted=True, sign_authn_requests=True)
    location = sso.client.get("/saml/acme/login").headers["Location"]
    assert "Signature=" in location  # signed with our key, unsealed
    request_id = TestIdP.authn_request_id(location)
    xml = sso.response(in_response_to=request_id, encrypt_for=_sp_cert(sso.db, sso.org.org.id))
    assert sso.post(xml).status_code == 303  # decrypted with our key, unsealed
    assert _stored(sso.db, sso.org.org.id).startswith("sealed:v1:")


def test_configuring_with_the_secret_never_stores_the_key_in_plaintext(db: Database, acme, idp: TestIdP) -> None:
    configure_org(db, acme.org.slug, idp.metadata(), secret_key="test-secret-key-32-characters-min")
    assert sp_keys.sealed_under("test-secret-key-32-characters-min", _stored(db, acme.org.id))


def test_a_sealed_key_copied_into_another_orgs_row_does_not_open(sso: Sso) -> None:
    sso.start_login()
    with pytest.raises(sp_keys.KeyUnavailable):
        sp_keys.unseal(["test-secret-key-32-characters-min"], "another-org-id", _stored(sso.db, sso.org.org.id))


def test_rotating_secret_key_with_the_previous_one_keeps_sign_in_working(sso: Sso, db: Database) -> None:
    sso.start_login()  # sealed under test-secret-key-32-characters-min
    rotated = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "new-secret-key-32-characters-long",
                          "SECRET_KEY_PREVIOUS": "older-one test-secret-key-32-characters-min", "BASE_URL": "http://localhost",
                          "TESTING": True})
    sso.client = rotated.test_client()
    assert sso.sp_login(name_id="amy@acme.test").status_code == 303
    assert sp_keys.sealed_under("new-secret-key-32-characters-long", _stored(db, sso.org.org.id))  # sealed again at that use


def test_reseal_keys_cli_seals_every_key_under_the_new_secret(
        sso: Sso, db: Database, cli_env: dict[str, str]) -> None:
    sso.start_login()
    runner = CliRunner(env={**cli_env, "SECRET_KEY": "new-secret-key-32-characters-long", "OLD_KEYS": "test-secret-key-32-characters-min"})
    result = runner.invoke(saml_cli, ["reseal-keys", "--old-secret-env", "OLD_KEYS"])
    assert result.exit_code == 0 and "1 SP private key(s) sealed" in result.output, result.output
    assert sp_keys.sealed_under("new-secret-key-32-characters-long", _stored(db, sso.org.org.id))
    again = runner.invoke(saml_cli, ["reseal-keys", "--old-secret-env", "OLD_KEYS"])
    assert "0 SP private key(s) sealed" in again.output
    unknown = CliRunner(env={**cli_env, "SECRET_KEY": "yet-another-key-32-characters-long"}).invoke(saml_cli, ["reseal-keys"])
    assert unknown.exit_code == 1 and "nothing was changed" in unknown.output
    assert sp_keys.sealed_under("new-secret-key-32-characters-long", _stored(db, sso.org.org.id))


@pytest.mark.sqlite_only("inserts a row into the 0012 schema with sqlite3, foreign keys off")
@pytest.mark.parametrize("secret_known", [True, False])
def test_migration_0013c_seals_plaintext_keys_when_it_knows_secret_key(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret_known: bool) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    upgrade(url, "0012")
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO saml_connections (org_id, idp_entity_id, idp_sso_url, idp_signing_certs, "
                     "sp_cert_pem, sp_key_pem, jit, allow_idp_initiated, sign_authn_requests, "
                     "want_assertions_encrypted, attribute_map, created_at, updated_at, version) VALUES "
                     "('org-1', 'e', 'https://idp/sso', '[]', 'cert', ?, 1, 0, 0, 0, '{}', "
                     "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)", (f"{PEM_HEADER}\nAAAA\n",))
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path / "no-such-folder"))
    if secret_known:
        monkeypatch.setenv("SECRET_KEY", "migration-secret")
    else:
        monkeypatch.delenv("SECRET_KEY", raising=False)
    upgrade(url, "0013c")
    with sqlite3.connect(path) as conn:
        (stored,) = conn.execute("SELECT sp_key_pem FROM saml_connections").fetchone()
    if secret_known:
        assert sp_keys.unseal(["migration-secret"], "org-1", stored) == f"{PEM_HEADER}\nAAAA\n"
    else:  # left for the service to seal at first use; still readable as it was
        assert stored == f"{PEM_HEADER}\nAAAA\n"
    assert not (tmp_path / "no-such-folder").exists()  # the migration never makes a secret of its own
