"""Review s23 (session): `identity audit verify --org @operator` and gateway credentials planted by SQL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest
from click.testing import Result
from sqlalchemy import insert

from audit import Actor, clock
from identity import gateway, tokens
from identity.db import Database
from identity.models import GatewayCredential
from tests.audit.test_reconcile import sql


@pytest.mark.xfail(strict=True, reason=(
    "review s23: reconcile_operator exempts from the creation event every gateway credential whose created_at "
    "is before the operators' chain's first event, and created_at is whatever the INSERT says: a backdoor "
    "credential (it checks any org's keys and debits any team's wallet) inserted with an old created_at, or "
    "any one while the chain is still empty, verifies 'reconciled'"))
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
