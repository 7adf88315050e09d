"""Review s23 (session): `identity audit verify --org @operator` and gateway credentials planted by SQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import insert

from audit import Actor, clock, record
from audit.actor import system_actor
from audit.log import OPERATOR_STREAM, Target
from identity import gateway, tokens
from identity.actions import Action
from identity.db import Database
from identity.models import GatewayCredential
from tests.audit.test_reconcile import sql


@pytest.mark.parametrize("chain", ["begun", "empty"])
def test_a_backdated_gateway_credential_planted_by_sql_is_found(cli: Callable[..., Result], db: Database,
                                                               system: Actor, chain: str) -> None:
    if chain == "begun":
        with db.transaction() as session:
            gateway.create_credential(session, system, name="edge")
    intruder = str(uuid.uuid4())
    sql(db, insert(GatewayCredential).values(
        id=intruder, name="edge", prefix="gw_ba5eba11ba5e", created_at=clock.now() - dt.timedelta(days=400),
        secret_hash=tokens.digest("gw_ba5eba11ba5e_known-to-the-insider")))
    result = cli("verify", "--org", "@operator")
    assert result.exit_code == 3 and intruder in result.output, result.output


def _made_by_an_older_release(db: Database, days: int, *, event: bool) -> str:
    """A gateway credential as a release before 2026-12-08 made it: with no event (before 2026-12-06)
    or with its `gateway_credential.created` and no `operator.chain_begun` before it."""
    new = tokens.generate("gw")
    row = GatewayCredential(id=str(uuid.uuid4()), name="older", prefix=new.prefix, secret_hash=new.hash,
                            created_at=clock.now() - dt.timedelta(days=days))
    with db.transaction() as session:
        session.add(row)
        if event:
            record(session, system_actor("older release"), Action.GATEWAY_CREDENTIAL_CREATED,
                   Target("gateway_credential", row.id, row.prefix),
                   {"name": row.name, tokens.FINGERPRINT: tokens.fingerprint(new.hash)}, org_id=OPERATOR_STREAM)
    return row.id


@pytest.mark.parametrize("chain", ["begun", "empty"])
def test_a_database_upgraded_from_before_the_baseline_verifies_clean_once(
        cli: Callable[..., Result], cli_env: dict[str, str], db: Database, chain: str) -> None:
    from identity.web.cli import main

    older = _made_by_an_older_release(db, 400, event=False)  # before the chain: no event at all
    if chain == "begun":
        _made_by_an_older_release(db, 1, event=True)
    assert older in cli("verify", "--org", "@operator").output  # no exemption: it needs its event
    upgraded = CliRunner(env=cli_env).invoke(main, ["db", "upgrade"])
    assert upgraded.exit_code == 0 and "recorded 1 gateway credential(s)" in upgraded.output, upgraded.output
    clean = cli("verify", "--org", "@operator")
    assert clean.exit_code == 0 and "reconciled" in clean.output, clean.output
    intruder = str(uuid.uuid4())  # planted after the chain began: the next upgrade records it not
    sql(db, insert(GatewayCredential).values(
        id=intruder, name="edge", prefix="gw_ba5eba11ba5e", created_at=clock.now() - dt.timedelta(days=500),
        secret_hash=tokens.digest("gw_ba5eba11ba5e_known-to-the-insider")))
    again = CliRunner(env=cli_env).invoke(main, ["db", "upgrade"])
    assert again.exit_code == 0 and "recorded" not in again.output, again.output
    result = cli("verify", "--org", "@operator")
    assert result.exit_code == 3 and intruder in result.output and older not in result.output, result.output
