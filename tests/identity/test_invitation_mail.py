"""Invitations by email (issue 16): the mail through a real SMTP server, the link, revoke, resend,
expiry (read as of now, and swept), and the outbox when mail is down (DESIGN.md 3.6)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor, clock
from audit.models import AuditEvent
from identity import invitations, keys, orgs
from identity.db import Database
from identity.models import OutboxMail
from identity.orgs import NewOrg
from identity.web.app import create_app
from identity.web.cli import main
from saml import links
from tests.conftest import ReadingClient
from tests.factories import actions
from tests.saml.conftest import form_token
from tests.smtp import free_port, smtp_server

BASE_URL = "http://localhost"


def make_client(db: Database, smtp_url: str | None) -> FlaskClient:
    config: dict[str, Any] = {"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                              "BASE_URL": BASE_URL, "TESTING": True, "SIGN_IN_EMAIL_MIN_SECONDS": 0.01}
    if smtp_url:
        config["SMTP_URL"] = smtp_url
    app: Flask = create_app(config)
    app.test_client_class = ReadingClient
    return app.test_client()


@pytest.fixture
def auth(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                  team_id=acme.default_team_id, name="owner", scopes=["admin"])
    return {"Authorization": f"Bearer {key.secret}"}


@pytest.fixture
def smtp() -> Iterator[Any]:
    with smtp_server() as served:
        yield served


def invite(client: FlaskClient, auth: dict[str, str], email: str = "new@acme.test", **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/orgs/acme/invitations", json={"email": email, **body}, headers=auth)
    assert response.status_code == 201, response.json
    return response.json


def follow(client: FlaskClient, link: str, answer: str) -> Any:
    """Open the invitation's page as a browser does and press one of its buttons."""
    path = link.removeprefix(BASE_URL)
    page = client.get(path)
    assert page.status_code == 200, page.data
    return client.post(path, data={"csrf_token": form_token(page) or "", "answer": answer})


def assert_no_token_in_audit(db: Database, *tokens: str) -> None:
    with db.reading() as session:
        text = json.dumps([e.changes for e in session.scalars(select(AuditEvent))])
    for token in tokens:
        assert token not in text and token.split("_", 2)[2] not in text  # nor its secret part alone


def test_invite_mail_link_accept(db: Database, acme: NewOrg, auth: dict[str, str], smtp: Any) -> None:
    inbox, port = smtp
    client = make_client(db, f"smtp://127.0.0.1:{port}")
    sent = invite(client, auth, role="admin")
    assert sent["link"] == f"{BASE_URL}/invite/{sent['token']}" and sent["mail"]["status"] == "sent"
    message = inbox.wait(1)[0]
    assert message["To"] == "new@acme.test" and "Acme" in message["Subject"]
    assert inbox.link() == sent["link"]
    assert client.post(sent["link"].removeprefix(BASE_URL), data={"answer": "accept"}).status_code == 403  # no form
    accepted = follow(client, inbox.link(), "accept")
    assert accepted.status_code == 200 and b"joined" in accepted.data
    members = client.get("/api/v1/orgs/acme/members", headers=auth).json["members"]
    assert {m["userName"]: m["role"] for m in members}["new@acme.test"] == "admin"
    assert client.get(sent["link"].removeprefix(BASE_URL)).status_code == 400  # used up
    log = actions(db, acme.org.id)
    assert log.index("invitation.created") < log.index("mail.sent") < log.index("invitation.accepted")
    assert_no_token_in_audit(db, sent["token"])
    with db.reading() as session:  # a delivered mail keeps no live link
        stored = session.scalars(select(OutboxMail)).one()
        assert (stored.status, stored.link, stored.body) == ("sent", None, "")


def test_decline_from_the_page(db: Database, acme: NewOrg, auth: dict[str, str], smtp: Any) -> None:
    inbox, port = smtp
    client = make_client(db, f"smtp://127.0.0.1:{port}")
    invite(client, auth)
    assert follow(client, inbox.wait(1) and inbox.link(), "decline").status_code == 200
    assert client.get("/api/v1/orgs/acme/invitations", headers=auth).json["invitations"][0]["status"] == "declined"
    assert actions(db, acme.org.id)[-1] == "invitation.declined"


def test_a_page_answered_after_the_week_records_the_expiry_with_the_answers_request(
        db: Database, acme: NewOrg, auth: dict[str, str]) -> None:
    """The page opened in time, its Accept pressed after the week: the expiry is the invitee's act
    (their link found it), carrying that request's id, address and user agent as any actor does."""
    client = make_client(db, None)
    path = invite(client, auth)["link"].removeprefix(BASE_URL)
    page = client.get(path)
    with clock.frozen_at(clock.now() + dt.timedelta(days=8)):
        late = client.post(path, data={"csrf_token": form_token(page) or "", "answer": "accept"},
                           headers={"User-Agent": "Mail client/1.0"})
    assert late.status_code == 400 and b"expired" in late.data
    with db.reading() as session:
        expired = session.scalars(select(AuditEvent).where(AuditEvent.action == "invitation.expired")).one()
    assert (expired.actor_display, expired.user_agent) == ("invitee new@acme.test", "Mail client/1.0")
    assert expired.request_id is not None and expired.ip is not None


def test_resend_makes_a_new_link_and_ends_the_old(db: Database, acme: NewOrg, auth: dict[str, str],
                                                  smtp: Any) -> None:
    inbox, port = smtp
    client = make_client(db, f"smtp://127.0.0.1:{port}")
    first = invite(client, auth)
    again = client.post(f"/api/v1/orgs/acme/invitations/{first['id']}/resend", headers=auth)
    assert again.status_code == 200 and again.json["token"] != first["token"]
    assert again.json["mail"]["status"] == "sent" and again.json["seats"]["pending_invitations"] == 1
    inbox.wait(2)
    assert inbox.link(-1) == again.json["link"]
    assert client.post("/api/v1/invitations/accept", json={"token": first["token"]}).status_code == 401
    assert client.get(first["link"].removeprefix(BASE_URL)).status_code == 400
    assert follow(client, inbox.link(-1), "accept").status_code == 200
    assert "invitation.resent" in actions(db, acme.org.id)
    assert_no_token_in_audit(db, first["token"], again.json["token"])


def test_revoke(db: Database, acme: NewOrg, auth: dict[str, str]) -> None:
    client = make_client(db, None)
    sent = invite(client, auth)
    assert sent["mail"]["status"] == "pending"  # no SMTP_URL: the outbox keeps it
    assert client.delete(f"/api/v1/orgs/acme/invitations/{sent['id']}", headers=auth).status_code == 204
    refused = client.post("/api/v1/invitations/accept", json={"token": sent["token"]})
    assert refused.status_code == 400 and "revoked" in refused.json["detail"]
    again = client.delete(f"/api/v1/orgs/acme/invitations/{sent['id']}", headers=auth)
    assert again.status_code == 409 and again.json["invitation_status"] == "revoked"
    assert client.post(f"/api/v1/orgs/acme/invitations/{sent['id']}/resend", headers=auth).status_code == 409
    assert client.get("/api/v1/orgs/acme/outbox", headers=auth).json["mails"][0]["status"] == "cancelled"
    assert actions(db, acme.org.id)[-1] == "invitation.revoked"
    other = client.delete("/api/v1/orgs/acme/invitations/6f1c1f9e-0000-4000-8000-000000000000", headers=auth)
    assert other.status_code == 404


def test_expiry_is_read_as_of_now_and_swept_by_the_cli(db: Database, acme: NewOrg, auth: dict[str, str],
                                                       cli_env: dict[str, str]) -> None:
    client = make_client(db, None)
    sent = invite(client, auth)
    assert client.get("/api/v1/orgs/acme/seats", headers=auth).json["pending_invitations"] == 1
    later = clock.now() + dt.timedelta(days=7, seconds=1)
    with clock.frozen_at(later):
        listed = client.get("/api/v1/orgs/acme/invitations", headers=auth).json["invitations"]
        assert [i["status"] for i in listed] == ["expired"]  # lazily, before any sweep
        assert client.get("/api/v1/orgs/acme/invitations?status=pending", headers=auth).json["invitations"] == []
        assert client.get("/api/v1/orgs/acme/seats", headers=auth).json["pending_invitations"] == 0
        assert "invitation.expired" not in actions(db, acme.org.id)
        result = CliRunner(env=cli_env).invoke(main, ["invitations", "expire"])
        assert result.exit_code == 0 and "1 invitations expired" in result.output
        assert CliRunner(env=cli_env).invoke(main, ["invitations", "expire"]).output.startswith("0 ")
    assert actions(db, acme.org.id).count("invitation.expired") == 1
    with db.reading() as session:
        assert session.scalars(select(OutboxMail.status)).one() == "cancelled"
    assert client.post("/api/v1/invitations/accept", json={"token": sent["token"]}).status_code == 400
    # An expired invitation can be sent again: pending for another 7 days, with a new link.
    again = client.post(f"/api/v1/orgs/acme/invitations/{sent['id']}/resend", headers=auth)
    assert again.status_code == 200 and again.json["status"] == "pending"


def test_outbox_keeps_mail_while_smtp_is_down_and_retry_delivers_it(
        db: Database, acme: NewOrg, auth: dict[str, str], cli_env: dict[str, str]) -> None:
    port = free_port()  # nothing listens there yet
    client = make_client(db, f"smtp://127.0.0.1:{port}")
    sent = invite(client, auth)
    assert sent["mail"]["status"] == "failed"
    mails = client.get("/api/v1/orgs/acme/outbox", headers=auth).json["mails"]
    assert [(m["status"], m["attempts"], m["link"]) for m in mails] == [("failed", 1, sent["link"])]
    assert mails[0]["last_error"] and "mail.failed" in actions(db, acme.org.id)
    assert client.get("/api/v1/orgs/acme/outbox?status=sent", headers=auth).json["mails"] == []
    env = {**cli_env, "SMTP_URL": f"smtp://127.0.0.1:{port}"}
    assert CliRunner(env=env).invoke(main, ["mail", "retry"]).exit_code == 1  # still down
    with smtp_server(port) as (inbox, _):
        result = CliRunner(env=env).invoke(main, ["mail", "retry"])
        assert result.exit_code == 0 and "1 sent" in result.output
        assert inbox.wait(1) and inbox.link() == sent["link"]
    mails = client.get("/api/v1/orgs/acme/outbox", headers=auth).json["mails"]
    assert [(m["status"], m["attempts"], m["link"]) for m in mails] == [("sent", 3, None)]
    assert follow(client, sent["link"], "accept").status_code == 200


def test_the_next_send_retries_what_failed(db: Database, acme: NewOrg, auth: dict[str, str]) -> None:
    port = free_port()
    client = make_client(db, f"smtp://127.0.0.1:{port}")
    first = invite(client, auth, "first@acme.test")
    assert first["mail"]["status"] == "failed"
    with smtp_server(port) as (inbox, _):
        second = invite(client, auth, "second@acme.test")
        assert second["mail"]["status"] == "sent"
        assert sorted(m["To"] for m in inbox.wait(2)) == ["first@acme.test", "second@acme.test"]
    assert {m["status"] for m in client.get("/api/v1/orgs/acme/outbox", headers=auth).json["mails"]} == {"sent"}


def test_outbox_and_revoke_need_an_admin(db: Database, acme: NewOrg, system: Actor, auth: dict[str, str]) -> None:
    from identity import users

    client = make_client(db, None)
    sent = invite(client, auth)
    with db.transaction() as session:
        dev = users.provision_user(session, system, acme.org.id, user_name="dev@acme.test", source="manual")
        key = keys.create_api_key(session, system, acme.org.id, user_id=dev.id, team_id=acme.default_team_id,
                                  name="dev", scopes=["admin"])
    member = {"Authorization": f"Bearer {key.secret}"}
    assert client.get("/api/v1/orgs/acme/outbox", headers=member).status_code == 403
    assert client.delete(f"/api/v1/orgs/acme/invitations/{sent['id']}", headers=member).status_code == 403
    assert client.post(f"/api/v1/orgs/acme/invitations/{sent['id']}/resend", headers=member).status_code == 403
    assert client.get("/api/v1/orgs/acme/outbox?status=nope", headers=auth).status_code == 400


def test_no_token_in_a_log_line(db: Database, acme: NewOrg, auth: dict[str, str],
                                caplog: pytest.LogCaptureFixture) -> None:
    """Mail that fails, links followed: the log names routes and mail ids, never a link's token."""
    import logging

    from identity.web.logs import JsonFormatter

    logger = logging.getLogger("identity")
    logger.addHandler(caplog.handler)
    try:
        client = make_client(db, f"smtp://127.0.0.1:{free_port()}")
        sent = invite(client, auth)
        again = client.post(f"/api/v1/orgs/acme/invitations/{sent['id']}/resend", headers=auth).json
        follow(client, again["link"], "accept")
    finally:
        logger.removeHandler(caplog.handler)
    text = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "mail delivery failed" in text and "/invite/<token>" in text
    for token in (sent["token"], again["token"]):
        assert token not in text


# aiosmtpd warns of AUTH without STARTTLS on its implicit-TLS server, where the whole connection is TLS.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtps"])
def test_mail_over_tls_with_a_login(db: Database, acme: NewOrg, auth: dict[str, str], tmp_path: Any,
                                    scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from identity import mail
    from tests.smtp import self_signed

    monkeypatch.setattr(mail, "TIMEOUT_SECONDS", 1.0)  # aiosmtpd leaves a refused login hanging
    cert, key = self_signed(tmp_path)
    with smtp_server(tls=(cert, key), implicit_tls=scheme == "smtps", login=("mailer", "p@ss word")) as (inbox, port):
        base = {"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min", "BASE_URL": BASE_URL,
                "TESTING": True, "SMTP_CA_FILE": str(cert)}
        wrong = create_app({**base, "SMTP_URL": f"{scheme}://mailer:wrong@127.0.0.1:{port}"}).test_client()
        assert invite(wrong, auth, "a@acme.test")["mail"]["status"] == "failed"  # refused login: kept
        good = create_app({**base, "SMTP_URL": f"{scheme}://mailer:p%40ss%20word@127.0.0.1:{port}"}).test_client()
        assert invite(good, auth, "b@acme.test")["mail"]["status"] == "sent"
        assert sorted(m["To"] for m in inbox.wait(2)) == ["a@acme.test", "b@acme.test"]  # the failed one retried


def test_cli_refusals(acme: NewOrg, cli_env: dict[str, str]) -> None:
    no_smtp = CliRunner(env={**cli_env, "SMTP_URL": ""}).invoke(main, ["mail", "retry"])
    assert no_smtp.exit_code == 1 and "SMTP_URL is not set" in no_smtp.output
    unknown = CliRunner(env=cli_env).invoke(main, ["invitations", "expire", "--org", "nope"])
    assert unknown.exit_code == 1 and "error:" in unknown.output


def test_the_status_filter_is_in_the_query_so_a_page_is_full(db: Database, acme: NewOrg,
                                                             auth: dict[str, str]) -> None:
    client = make_client(db, None)
    old = [invite(client, auth, f"old{n}@acme.test")["id"] for n in range(2)]
    with clock.frozen_at(clock.now() + dt.timedelta(days=6)):
        new = [invite(client, auth, f"new{n}@acme.test")["id"] for n in range(3)]
    with clock.frozen_at(clock.now() + dt.timedelta(days=7, hours=1)):  # the first two have expired, unswept
        base = "/api/v1/orgs/acme/invitations"
        first = client.get(f"{base}?status=expired&limit=1", headers=auth).json
        rest = client.get(f"{base}?status=expired&limit=1&after={first['next']}", headers=auth).json
        assert [i["id"] for i in first["invitations"] + rest["invitations"]] == old[::-1]
        pending = client.get(f"{base}?status=pending&limit=3", headers=auth).json
        assert [i["id"] for i in pending["invitations"]] == sorted(new, reverse=True)  # one instant: by id
        assert pending["next"] is None
    refused = client.get(f"{base}?status=pendingg", headers=auth)
    assert refused.status_code == 400 and refused.json["field"] == "status"


def test_every_mail_of_an_org_with_the_longest_name_is_queued_with_a_shortened_subject(db: Database,
                                                                                      system: Actor) -> None:
    """An org's name may be 200 characters, the outbox's subject too: each kind of mail (an invitation,
    an emailed sign-in link) names the org and is queued with its subject cut, never refused (on
    PostgreSQL: a 500)."""
    with db.transaction() as session:
        made = orgs.create_org(session, system, "L" * 200, slug="longname", owner_email="owner@long.test")
        invitations.invite(session, system, made.org.id, email="new@long.test", base_url=BASE_URL)
        links.request_sign_in_links(session, system, ["longname"], "owner@long.test", browser="b",
                                    client_address="127.0.0.1", base_url=BASE_URL)
    with db.reading() as session:
        subjects = dict(session.execute(select(OutboxMail.kind, OutboxMail.subject)).all())
    assert set(subjects) == {"invitation", "sign_in_link"}
    for subject in subjects.values():
        assert len(subject) == 200 and subject.endswith("L\u2026"), subject
