"""The service's JSON log lines keep the context their callers give them: a failed mail says which
mail and why, a failed top-up hook which request. (Secrets never: those are kept out by the callers.)

From a hostile operator's review: the docstring says what the service did.
"""

from __future__ import annotations

import json

import pytest

from audit import Actor
from identity import topups
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.logs import JsonFormatter
from tests.identity.test_invitation_mail import auth, invite, make_client  # noqa: F401 (auth: a fixture)
from tests.identity.test_operator_commands import pending_topup  # noqa: F401 (a fixture)
from tests.smtp import free_port


def _lines(caplog: pytest.LogCaptureFixture, message: str) -> list[dict]:
    """The captured records of `message` as the service writes them: JSON lines (identity.web.logs)."""
    return [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.getMessage() == message]


def test_a_failed_mail_is_logged_with_its_mail_id_and_error(db: Database, acme: NewOrg, auth: dict[str, str],  # noqa: F811
                                                           logged: pytest.LogCaptureFixture) -> None:
    """identity.mail logs `mail delivery failed` with `extra={"mail_id": ..., "error": ...}`, but the
    JSON formatter writes only a fixed list of fields (method, route, status...): the line the
    operator gets says a mail failed and not which one or why (test_invitation_mail's
    test_no_token_in_a_log_line says "the log names routes and mail ids"; it never did)."""
    client = make_client(db, f"smtp://127.0.0.1:{free_port()}")  # nothing listens there
    sent = invite(client, auth)
    assert sent["mail"]["status"] == "failed"
    mail_id = client.get("/api/v1/orgs/acme/outbox", headers=auth).json["mails"][0]["id"]
    [line] = _lines(logged, "mail delivery failed")
    assert line.get("mail_id") == mail_id, line
    assert line.get("error") == "ConnectionRefusedError", line


def test_a_failed_top_up_hook_is_logged_with_its_request_id(db: Database, system: Actor, pending_topup: str,  # noqa: F811
                                                           logged: pytest.LogCaptureFixture) -> None:
    """identity.topups logs `top-up hook failed` with the top-up request's id and the error's kind;
    the JSON line drops both, so the operator cannot tell which customer's top-up did not reach
    the payment system."""
    report = topups.deliver(db, (f"http://127.0.0.1:{free_port()}/hook", "hook-secret"), system)
    assert report["failed"] == 1
    [line] = _lines(logged, "top-up hook failed")
    assert line.get("topup_request_id") == pending_topup, line
    assert line.get("error") == "URLError", line
