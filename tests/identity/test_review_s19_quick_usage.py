"""Hostile review (session 19) of the quick usage debit (identity.usage_quick, identity.web.usage_front):
what it decides, writes and answers must be what the full path (identity.usage.record_usage) would,
with no deadlock against any other writer (PostgreSQL, real concurrent transactions)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask

from audit import Actor
from identity import keys, teams, usage, wallets
from identity.db import Database
from identity.orgs import NewOrg
from identity.usage import UsageRecord
from tests.factories import wait_for_a_lock_wait
from tests.identity.test_wallet_usage import World, top_up, use, world  # noqa: F401  (world: the fixture)
from tests.identity.test_wallets import GATEWAY, owner


def _other_team_key(db: Database, acme: NewOrg, system: Actor) -> tuple[str, str]:
    """A second team of the same org, with money and a key: (team id, key id)."""
    with db.transaction() as session:
        other = teams.create_team(session, owner(acme), acme.org.id, "Other")
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=other.id,
                                  name="other", scopes=["inference"])
    with db.transaction() as session:
        wallets.top_up(session, owner(acme), acme.org.id, other.id, 10_000, "seed")
    return other.id, key.id


@pytest.mark.postgres_only("two write transactions at once, under READ COMMITTED")
def test_a_quick_debit_behind_another_teams_uncommitted_booking_of_its_request_id_does_not_deadlock(
        app: Flask, db: Database, world: World, acme: NewOrg, system: Actor) -> None:  # noqa: F811
    """The gateway re-resolved the caller's key and retried its request with a key of another team of the
    same org (the case identity.web.api.usage documents) while the first attempt's full-path debit (a
    batch, or a team with limits) had written its ledger row and not yet committed. The quick read takes
    the org's audit head at once; its write's ON CONFLICT then waits for the first attempt's row, whose
    transaction takes that head at its commit: a deadlock, one of them killed (a 503, or the first debit
    lost). Serially: the first attempt commits, the retry answers `duplicate` naming the first team."""
    top_up(app.test_client(), world, 10_000)
    other_team, other_key = _other_team_key(db, acme, system)
    answers: list[Any] = []
    retry = threading.Thread(target=lambda: answers.append(
        use(app.test_client(), world, 300, "same-request", key_id=world.member_key_id)))
    with db.transaction() as session:  # the first attempt, by the full path, not committed yet
        [first] = usage.record_usage(session, GATEWAY, [UsageRecord(other_key, "gpt-x", 300, "same-request")])
        retry.start()
        wait_for_a_lock_wait(db, "the retry's write behind the first attempt's ledger row")
    retry.join(30)
    assert first.status == "debited" and first.team_id == other_team
    assert answers and answers[0].status_code == 200, answers and answers[0].data
    assert answers[0].get_json()["status"] == "duplicate" and answers[0].get_json()["team_id"] == other_team
