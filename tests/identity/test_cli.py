"""The `identity` command's contracts (DESIGN.md section 8)."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from identity import scim_credentials
from identity.db import Database
from identity.web.cli import main
from tests.factories import counts


def _create(runner: CliRunner, *args: str) -> dict:
    result = runner.invoke(main, ["org", "create", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_org_create_prints_the_contract_and_its_secrets_work(runner: CliRunner, client: FlaskClient) -> None:
    out = _create(runner, "Acme Corp", "--owner-email", "root@acme.test", "--included-seats", "5",
                  "--seat-price-cents", "1200", "--max-seats", "50")
    assert out["org"]["slug"] == "acme-corp" and out["org"]["id"]
    assert out["owner"]["email"] == "root@acme.test"
    assert (out["org"]["included_seats"], out["org"]["seat_price_cents"], out["org"]["max_seats"]) == (5, 1200, 50)
    # The admin API key works on the admin API...
    me = client.get("/api/v1/key", headers={"Authorization": f"Bearer {out['admin_api_key']}"})
    assert me.status_code == 200
    assert me.json["org"]["slug"] == "acme-corp" and me.json["role"] == "owner" and me.json["scopes"] == ["admin"]
    seats = client.get("/api/v1/orgs/acme-corp/seats", headers={"Authorization": f"Bearer {out['admin_api_key']}"})
    assert seats.status_code == 200 and seats.json["used"] == 1 and seats.json["included"] == 5
    # ...and the SCIM token authenticates to the org's SCIM service.

    with Database(runner.env["DATABASE_URL"]).reading() as session:
        actor = scim_credentials.verify_scim_token(session, out["scim_token"]).actor
    assert actor.org_id == out["org"]["id"]


def test_org_create_without_owner_email_uses_a_default_address(runner: CliRunner) -> None:
    out = _create(runner, "Initech")
    assert out["owner"]["email"] == "owner@initech.invalid"


@pytest.mark.parametrize("args,message", [
    (["org", "create", "Acme", "--json"], "already exists"),
    (["org", "create", "Bad", "--owner-email", "not-an-email", "--json"], "invalid owner email"),
    (["org", "create", "Neg", "--included-seats", "-1", "--json"], "Invalid value"),
    (["org", "create", "Zero", "--max-seats", "0", "--json"], "Invalid value"),
    (["billing", "check", "--org", "nope"], "no org with slug"),
])
def test_bad_cli_input_is_a_clear_error_and_writes_nothing(runner: CliRunner, db: Database, args, message) -> None:
    _create(runner, "Acme")
    before = counts(db)
    result = runner.invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output
    assert counts(db) == before


def test_secrets_are_not_in_audit_events(runner: CliRunner, db: Database) -> None:
    from sqlalchemy import select

    from audit.models import AuditEvent

    out = _create(runner, "Acme")
    with db.reading() as session:
        dumped = json.dumps([[e.changes, e.target_display, e.actor_display] for e in session.scalars(select(AuditEvent))])
    secret_parts = [out["scim_token"].split("_", 2)[2], out["admin_api_key"].split("_", 2)[2]]
    assert not any(part in dumped for part in secret_parts)


def test_billing_check_passes_on_a_consistent_org(runner: CliRunner) -> None:
    _create(runner, "Acme")
    result = runner.invoke(main, ["billing", "check", "--org", "acme"])
    assert result.exit_code == 0, result.output


def test_org_create_prints_a_sign_in_link_that_opens_the_console_as_the_owner(runner: CliRunner,
                                                                              client: FlaskClient) -> None:
    out = _create(runner, "Acme Corp", "--owner-email", "root@acme.test")
    path = urlsplit(out["sign_in_link"]).path  # under the CLI's BASE_URL
    assert path.startswith("/login/link/")
    page = client.get(path)
    token = re.search(r"name='csrf_token' value='([^']+)'", page.get_data(as_text=True))
    assert page.status_code == 200 and token
    signed_in = client.post(path, data={"csrf_token": token.group(1)})
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/console/teams"
    console = client.get("/console/teams")
    assert console.status_code == 200 and b"root@acme.test" in console.data and b">owner<" in console.data


@pytest.mark.parametrize("option", ["--included-seats", "--seat-price-cents", "--max-seats"])
@pytest.mark.parametrize("value", [str(10**10), str(10**20)])
def test_org_create_refuses_a_number_the_settings_refuse_in_one_error_line(runner: CliRunner, db: Database,
                                                                          option: str, value: str) -> None:
    """DESIGN.md 8's `identity org create NAME [--included-seats N] [--seat-price-cents C] [--max-seats M]`;
    README: every command answers bad input with one `error:` line (exit 1) or as bad usage (exit 2), "never
    a traceback". PATCH /settings refuses these above 10**9 (identity.orgs.SETTINGS); org create checks
    only the lower bound, so 10**20 dies in the driver (OverflowError on SQLite, DataError "integer out of
    range" on PostgreSQL, both tracebacks), and on SQLite 10**10 makes an org the settings would refuse."""
    before = counts(db)
    result = runner.invoke(main, ["org", "create", "Big", option, value, "--json"])
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (1, 2) and ("error:" in result.output or "Invalid value" in result.output)
    assert counts(db) == before
