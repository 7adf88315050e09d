"""Bugs of the audit log found by a security and compliance review; each test failed when written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import checkpoint_docs, clock
from audit.actor import Actor
from audit.checkpoints import sign_head
from audit.log import OPERATOR_STREAM
from audit.models import AuditCheckpoint, AuditEvent
from identity import invitations, orgs, scim_credentials, teams, users
from identity.db import Database
from identity.errors import SeatCapReached
from identity.orgs import NewOrg
from identity.service import run
from identity.web.cli import main
from tests.factories import provision


@pytest.mark.postgres_only("SQLite's writers are serialised (BEGIN IMMEDIATE): no other checkpoint can commit meanwhile")
def test_a_checkpoint_signed_meanwhile_does_not_make_a_valid_chain_unsignable(
        db: Database, busy: NewOrg, key: Ed25519PrivateKey, system: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/audit.md 4: the check before signing does not lock the head, writers go on appending,
    and events committed meanwhile are neither read nor signed. A checkpoint committed meanwhile
    (the hourly cron, an export, the API) is read all the same: it stands past the head this
    signing read, and the intact chain is refused as `truncated`."""
    real_all_of = checkpoint_docs.all_of
    meanwhile: list[int] = []

    def all_of_after_another_writer(session: Any, org_id: str) -> list[dict[str, Any]]:
        if not meanwhile:  # between this signing's read of the head and its read of the checkpoints
            meanwhile.append(1)
            with db.transaction() as other:
                teams.create_team(other, system, org_id, "Meanwhile")
            with db.transaction() as other:
                meanwhile.append(sign_head(other, key, org_id, "scheduled", actor=system).seq)
        return real_all_of(session, org_id)

    monkeypatch.setattr(checkpoint_docs, "all_of", all_of_after_another_writer)
    with db.transaction() as session:
        made = sign_head(session, key, busy.org.id, "manual", actor=system)  # UnverifiedHead: "truncated"
    assert made.seq < meanwhile[-1]


def _cap_at_one(db: Database, system: Actor, org_id: str) -> None:
    with db.transaction() as session:
        orgs.update_settings(session, system, org_id, {"max_seats": 1})  # the owner holds it


def _last_event(db: Database, org_id: str) -> AuditEvent:
    with db.reading() as session:
        return session.scalars(select(AuditEvent).where(AuditEvent.org_id == org_id)
                               .order_by(AuditEvent.seq.desc()).limit(1)).one()


def test_a_seat_refusal_for_a_long_user_name_is_refused_and_audited(db: Database, acme: NewOrg,
                                                                    system: Actor) -> None:
    """DESIGN 3.4: beyond the cap, provisioning fails with a clear error, changes nothing, and the
    refusal is an audit event. identity/service.py records the refusal with the userName as the
    target's id; a userName may have 320 characters, `audit_events.target_id` holds 64: on
    PostgreSQL the refusal's own event fails to write, the caller gets a database error (a 500)
    instead of the refusal, and no event says a seat was refused."""
    _cap_at_one(db, system, acme.org.id)
    long_name = "a-member-with-a-rather-long-but-valid-user-name-" + "x" * 30 + "@acme.test"
    assert 64 < len(long_name) <= 320
    with pytest.raises(SeatCapReached):
        run(db, system, users.provision_user, acme.org.id, user_name=long_name, email=long_name, source="manual")
    refusal = _last_event(db, acme.org.id)
    assert (refusal.action, refusal.outcome) == ("seat.refused", "refused")


def test_a_refused_reactivation_names_the_member_it_refused_by_id(db: Database, acme: NewOrg,
                                                                  system: Actor) -> None:
    """An event's target is what it is about, by id (docs/audit.md 1), so that `?target=<user id>`
    finds it. A reactivation refused by the seat cap is recorded with the member's userName as
    the target's id (identity/service.py takes `user_name` from the refusal's context)."""
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        users.deactivate_user(session, system, acme.org.id, bob.id)
    _cap_at_one(db, system, acme.org.id)
    with pytest.raises(SeatCapReached):
        run(db, system, users.reactivate_user, acme.org.id, bob.id)
    refusal = _last_event(db, acme.org.id)
    assert (refusal.action, refusal.outcome) == ("seat.refused", "refused")
    assert (refusal.target_type, refusal.target_id) == ("user", bob.id)


def test_the_operators_chain_of_a_fresh_deployment_is_not_reported_broken(
        cli: Callable[..., Result], db: Database, acme: NewOrg) -> None:
    """docs/audit.md 8: `identity audit verify --org @operator` reads the operators' own chain. Before
    any gateway credential was made it holds nothing, which is not tampering; verify reports it
    BROKEN (`truncated: the org has no audit chain`), exits 1, and writes `intact: false` for
    good into that very chain (its own audit.verified event)."""
    result = cli("verify", "--org", "@operator")
    assert result.exit_code == 0 and "BROKEN" not in result.output, result.output
    with db.reading() as session:
        verified = session.scalars(select(AuditEvent).where(AuditEvent.org_id == OPERATOR_STREAM)).one()
    assert verified.action == "audit.verified" and verified.changes["intact"] is True


def test_exporting_the_operators_chain_before_its_first_event_is_an_empty_export(
        cli: Callable[..., Result], db: Database, acme: NewOrg) -> None:
    """docs/audit.md 8: `identity audit export --org @operator` reads the operators' own chain. Before
    any gateway credential was made it has no head, and the export's checkpoint (checkpoints.sign_head)
    raised LookupError: a traceback where `verify` answers "intact: no events". Nothing to sign is
    not an error: no checkpoint, no event written, a note on stderr, exit 0, the export recorded."""
    result = cli("export", "--org", "@operator")
    assert result.exit_code == 0 and result.stdout == "", result.output
    assert "no events yet" in result.stderr
    with db.reading() as session:
        recorded = session.scalars(select(AuditEvent).where(AuditEvent.org_id == OPERATOR_STREAM)).one()
        assert session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.org_id == OPERATOR_STREAM)).all() == []
    assert recorded.action == "audit.exported"


def test_invitations_expired_by_the_operators_cron_name_the_cron_not_the_invitee(
        runner: CliRunner, db: Database, acme: NewOrg, system: Actor) -> None:
    """The actor is who made the call (DESIGN 3.2). `identity invitations expire` (the operators'
    cron) records each invitation.expired as done by the invitee (identity/invitations.py `expire`
    falls back to `_invitee`, and `expire_due` takes no actor): the log says carol expired her own
    invitation when the operator's job did."""
    with db.transaction() as session:
        invitation, _token = invitations.invite(session, system, acme.org.id, email="carol@acme.test")
    with clock.frozen_at(clock.now() + dt.timedelta(days=8)):
        result = runner.invoke(main, ["invitations", "expire"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    expired = _last_event(db, acme.org.id)
    assert expired.action == "invitation.expired" and expired.target_id == invitation.id
    assert "carol@acme.test" not in expired.actor_display, expired.actor_display
    assert (expired.actor_type, expired.actor_id) == ("system", "system")


def test_an_access_token_issued_to_a_scim_client_records_the_requests_user_agent(
        client: FlaskClient, db: Database, acme: NewOrg, system: Actor) -> None:
    """docs/audit.md 1: `user_agent` is the user agent of the request that made the change (null only
    for the CLI). scim/auth.py `_record_issued` passes the request's id and address but no user
    agent: every `scim_client.token_issued` says null, so an IdP's token requests cannot be told
    from a stolen secret used by another client."""
    with db.transaction() as session:
        issued = scim_credentials.create_scim_client(session, system, acme.org.id, name="Entra")
    token = client.post("/oauth/token", headers={"User-Agent": "Azure-SCIM-Client/1.0"},
                        data={"grant_type": "client_credentials", "client_id": issued.prefix,
                              "client_secret": issued.secret})
    assert token.status_code == 200, token.json
    event = _last_event(db, acme.org.id)
    assert event.action == "scim_client.token_issued" and event.ip is not None
    assert event.user_agent == "Azure-SCIM-Client/1.0"
