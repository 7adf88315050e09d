"""Session lifetimes read at start (README: `SESSION_IDLE_MINUTES`, `SESSION_ABSOLUTE_HOURS`): a value the
service accepts at start must work, or be refused at start naming the setting, never a 500 at each
sign-in.

From a hostile operator's review: the docstring says what the service did.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audit import Actor
from identity import config
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.app import create_app
from saml import links
from tests.saml.conftest import link_form


def test_a_session_lifetime_accepted_at_start_signs_people_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              db: Database, system: Actor, acme: NewOrg) -> None:
    """identity.config takes SESSION_ABSOLUTE_HOURS up to 1,000,000,000 (as every whole-number
    setting), but a session's end (now + that many hours) is past the year 9999 above about 70
    million hours: the service started, and every sign-in was a 500 (OverflowError)."""
    for name, value in {"DATABASE_URL": db.url, "SECRET_KEY": "s" * 32, "BASE_URL": "http://localhost",
                        "IDENTITY_DATA_DIR": str(tmp_path), "SESSION_ABSOLUTE_HOURS": "100000000"}.items():
        monkeypatch.setenv(name, value)
    try:
        app = create_app()
    except ValueError as refused:  # refused at start, naming the setting: as good
        assert "SESSION_ABSOLUTE_HOURS" in str(refused)
        return
    client = app.test_client()
    with db.transaction() as session:
        token = links.issue_sign_in_link(session, system, acme.org.id, "owner@acme.test")
    signed_in = client.post(f"/login/link/{token}", data=link_form(client, token))
    assert signed_in.status_code == 303, signed_in.data[:300]
    assert client.get("/me").status_code == 200


@pytest.mark.parametrize("value", ["0", "8785", "70000000"])
def test_a_session_lifetime_outside_a_year_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               value: str) -> None:
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SESSION_ABSOLUTE_HOURS", value)
    with pytest.raises(ValueError, match="SESSION_ABSOLUTE_HOURS must be a whole number from 1 to 8784"):
        config.from_environment()


def test_the_longest_session_lifetime_signs_people_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      db: Database, system: Actor, acme: NewOrg) -> None:
    for name, value in {"DATABASE_URL": db.url, "SECRET_KEY": "s" * 32, "BASE_URL": "http://localhost",
                        "IDENTITY_DATA_DIR": str(tmp_path), "SESSION_ABSOLUTE_HOURS": "8784"}.items():
        monkeypatch.setenv(name, value)
    client = create_app().test_client()
    with db.transaction() as session:
        token = links.issue_sign_in_link(session, system, acme.org.id, "owner@acme.test")
    assert client.post(f"/login/link/{token}", data=link_form(client, token)).status_code == 303
    assert client.get("/me").status_code == 200
