"""Require SSO: members sign in only through the IdP; owners keep an audited break-glass sign-in link."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from audit import Actor, clock
from identity import orgs
from identity.errors import InvalidValue
from identity.orgs import NewOrg
from saml.cli import login_link
from saml.cli import saml as saml_cli
from tests.factories import actions, provision
from tests.saml.conftest import Sso, link_form


def _link(runner: CliRunner, email: str) -> str:
    result = runner.invoke(login_link, ["--org", "acme", "--email", email])
    assert result.exit_code == 0, result.output
    return result.output.strip().rsplit("/login/link/", 1)[1]


def _require_sso(sso: Sso, on: bool = True) -> None:
    with sso.db.transaction() as session:
        orgs.set_require_sso(session, Actor("system", "system", "tests"), sso.org.org.id, on)


def test_member_signs_in_with_a_one_time_link_when_sso_is_optional(sso: Sso, runner: CliRunner, system: Actor) -> None:
    provision(sso.db, system, sso.org.org.id, "mia@acme.test")
    token = _link(runner, "mia@acme.test")
    page = sso.client.get(f"/login/link/{token}")
    assert page.status_code == 200 and b"<form method='post'>" in page.data
    assert sso.client.get("/me").status_code == 401  # a GET uses nothing up
    form = link_form(sso.client, token)
    assert sso.client.post(f"/login/link/{token}", data=form).status_code == 303
    me = sso.client.get("/me").json
    assert (me["userName"], me["signInMethod"]) == ("mia@acme.test", "login_link")
    sso.sign_out()
    assert sso.client.post(f"/login/link/{token}", data=form).status_code == 400  # single use
    assert sso.client.get("/me").status_code == 401


def test_members_cannot_get_or_use_a_link_when_sso_is_required(sso: Sso, runner: CliRunner, system: Actor) -> None:
    provision(sso.db, system, sso.org.org.id, "ned@acme.test")
    token = _link(runner, "ned@acme.test")  # issued before the org required SSO
    form = link_form(sso.client, token)
    _require_sso(sso)
    answer = sso.client.post(f"/login/link/{token}", data=form)
    assert answer.status_code == 403 and b"requires single sign-on" in answer.data
    assert sso.client.get("/me").status_code == 401
    assert actions(sso.db, sso.org.org.id)[-1] == "sso.login_failed"
    result = runner.invoke(login_link, ["--org", "acme", "--email", "ned@acme.test"])
    assert result.exit_code == 1 and "requires single sign-on" in result.output
    # SSO itself still works for the member.
    assert sso.sp_login(name_id="ned@acme.test").status_code == 303


def test_owner_keeps_an_audited_break_glass_sign_in(sso: Sso, runner: CliRunner) -> None:
    _require_sso(sso)
    token = _link(runner, "owner@acme.test")
    assert sso.client.post(f"/login/link/{token}", data=link_form(sso.client, token)).status_code == 303
    assert sso.client.get("/me").json["signInMethod"] == "break_glass"
    assert actions(sso.db, sso.org.org.id)[-2:] == ["sso.login_succeeded", "sso.break_glass_used"]


def test_expired_link_is_refused(sso: Sso, runner: CliRunner) -> None:
    token = _link(runner, "owner@acme.test")
    form = link_form(sso.client, token)
    with clock.frozen_at(clock.now() + dt.timedelta(minutes=16)):
        assert sso.client.get(f"/login/link/{token}").status_code == 400
        assert sso.client.post(f"/login/link/{token}", data=form).status_code == 400
    assert sso.client.get("/me").status_code == 401


def test_require_sso_needs_sso_configured_first(db, acme: NewOrg, system: Actor) -> None:
    with pytest.raises(InvalidValue), db.transaction() as session:
        orgs.set_require_sso(session, system, acme.org.id, True)


def test_the_require_sso_setting_follows_the_same_rule(db, acme: NewOrg, system: Actor) -> None:
    """PATCH /settings and `identity saml require-sso` decide alike (identity.orgs): no SSO, no requiring it."""
    with pytest.raises(InvalidValue, match="configure SAML SSO before requiring it"), db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"require_sso": True, "default_role": "viewer"})
    with db.transaction() as session:
        org = orgs.update_settings(session, system, acme.org.id, {"require_sso": False, "default_role": "viewer"})
        assert (org.require_sso, org.default_role) == (False, "viewer")


def test_the_require_sso_setting_needs_a_connection_and_is_audited(sso: Sso) -> None:
    with sso.db.transaction() as session:
        orgs.update_settings(session, Actor("system", "system", "tests"), sso.org.org.id, {"require_sso": True})
    assert actions(sso.db, sso.org.org.id)[-1] == "org.settings_changed"


def test_cli_require_sso(sso: Sso, runner: CliRunner) -> None:
    result = runner.invoke(saml_cli, ["require-sso", "--org", "acme", "--on"])
    assert result.exit_code == 0, result.output
    assert actions(sso.db, sso.org.org.id)[-1] == "sso.require_sso_changed"


def test_the_readmes_require_sso_command_line_works_as_written(sso: Sso, runner: CliRunner) -> None:
    """README "SAML 2.0 single sign-on" gives `identity saml require-sso --org acme  # members only through
    the IdP`; the command makes `--on/--off` a required option, so that line is a usage error (exit 2,
    "Missing option '--on'") and SSO stays optional."""
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "identity saml require-sso" in line)
    args = line.split("identity saml", 1)[1].split("#", 1)[0].split()
    assert args[:3] == ["require-sso", "--org", "acme"]
    result = runner.invoke(saml_cli, args)
    assert result.exit_code == 0, result.output
    assert actions(sso.db, sso.org.org.id)[-1] == "sso.require_sso_changed"
