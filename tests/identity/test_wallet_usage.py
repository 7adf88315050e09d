"""Wallets over HTTP (issue 18): `POST /api/v1/usage`, the 429 flow through the key check, the
wallet's admin API, bad input, tenant isolation and concurrency. Both databases."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import func, select

from audit import Actor, clock
from identity import keys, orgs
from identity.db import Database
from identity.orgs import NewOrg
from identity.wallet_models import Wallet, WalletEntry
from identity.web.cli import main
from tests.factories import provision
from tests.identity.test_every_service_helpers import snapshot_rows
from tests.statements import statements


@dataclass
class World:
    gateway: dict[str, str]
    owner: dict[str, str]
    member: dict[str, str]
    owner_key_id: str
    member_key_id: str
    member_key: str
    member_id: str
    wallet: str


def rows(db: Database) -> dict[str, Any]:
    """Every table's rows, but the keys' last-used times (a key's use is noted as it authenticates)."""
    found = snapshot_rows(db)
    found.pop("api_keys")
    return found


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def world(db: Database, system: Actor, acme: NewOrg, runner: CliRunner) -> World:
    made = json.loads(runner.invoke(main, ["gateway", "credential", "create", "--json"]).stdout.splitlines()[0])
    bob = provision(db, system, acme.org.id, "bob@acme.test", role="member")
    with db.transaction() as session:
        mine = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                   name="owner", scopes=["admin", "inference"])
        his = keys.create_api_key(session, system, acme.org.id, user_id=bob.id, team_id=acme.default_team_id,
                                  name="bob", scopes=["admin", "inference"])
    return World(bearer(made["credential"]), bearer(mine.secret), bearer(his.secret), mine.id, his.id, his.secret,
                 bob.id, f"/api/v1/orgs/{acme.org.slug}/teams/{acme.default_team_id}/wallet")


def use(client: FlaskClient, world: World, cost: int, request_id: str, key_id: str | None = None) -> Any:
    return client.post("/api/v1/usage", headers=world.gateway, json={
        "key_id": key_id or world.member_key_id, "model": "gpt-x", "cost_micros": cost, "request_id": request_id})


def verify(client: FlaskClient, world: World) -> dict[str, Any]:
    response = client.post("/api/v1/keys/verify", json={"key": world.member_key}, headers=world.gateway)
    assert response.status_code == 200
    return response.get_json()


def top_up(client: FlaskClient, world: World, micros: int) -> None:
    response = client.post(f"{world.wallet}/top-ups", headers=world.owner,
                           json={"amount_micros": micros, "reference": f"payment {uuid.uuid4()}"})
    assert response.status_code == 201, response.data


def test_the_429_flow_end_to_end(client: FlaskClient, world: World) -> None:
    top_up(client, world, 1_000)
    assert client.patch(world.wallet, headers=world.owner, json={"spend_limit_micros": 600}).status_code == 200
    assert verify(client, world)["budget"]["remaining_micros"] == 600
    ok = use(client, world, 600, "r1")
    assert ok.status_code == 200 and ok.get_json()["remaining_micros"] == 0
    refused = use(client, world, 1, "r2")
    assert refused.status_code == 429 and refused.content_type == "application/problem+json"
    body = refused.get_json()
    assert (body["code"], body["scope"], body["balance_micros"]) == ("spending_limit_reached", "team", 400)
    assert int(refused.headers["Retry-After"]) > 0
    check = verify(client, world)
    assert (check["valid"], check["reason"], check["resets_at"]) == (False, "spending_limit_reached",
                                                                     body["resets_at"])
    assert client.patch(world.wallet, headers=world.owner, json={"spend_limit_micros": 2_000}).status_code == 200
    assert verify(client, world)["valid"] is True
    assert use(client, world, 400, "r3").status_code == 200
    exhausted = use(client, world, 1, "r4")
    assert exhausted.status_code == 429 and exhausted.get_json()["code"] == "balance_exhausted"
    assert verify(client, world)["reason"] == "balance_exhausted"
    top_up(client, world, 50)
    accepted = verify(client, world)
    assert accepted["valid"] is True and accepted["budget"]["balance_micros"] == 50
    assert accepted["budget"]["remaining_micros"] == 50


def test_usage_answers_what_the_key_check_answers_right_after(client: FlaskClient, world: World) -> None:
    top_up(client, world, 100)
    answer = use(client, world, 10, "r1").get_json()
    assert answer["remaining_micros"] == verify(client, world)["budget"]["remaining_micros"] == 90  # no limit
    assert client.patch(world.wallet, headers=world.owner, json={"spend_limit_micros": 1_000}).status_code == 200
    answer = use(client, world, 10, "r2").get_json()
    assert answer["remaining_micros"] == verify(client, world)["budget"]["remaining_micros"] == 80  # the balance
    assert use(client, world, 81, "r3").get_json()["code"] == "balance_exhausted"


def test_a_retried_request_id_never_debits_twice(client: FlaskClient, db: Database, world: World) -> None:
    top_up(client, world, 1_000)
    answers = [use(client, world, 100, "same") for _ in range(3)]
    assert [a.get_json()["status"] for a in answers] == ["debited", "duplicate", "duplicate"]
    assert {a.get_json()["debited_micros"] for a in answers} == {100}
    results: list[str] = []

    def retry() -> None:
        results.append(use(client, world, 100, "parallel").get_json()["status"])

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["debited"] + ["duplicate"] * 7
    with db.reading() as session:
        assert session.scalar(select(func.count()).where(WalletEntry.kind == "usage")) == 2
        assert session.get_one(Wallet, world.wallet.split("/")[-2]).balance_micros == 800


def test_a_retry_writes_nothing_and_a_refusal_writes_once(client: FlaskClient, db: Database, world: World) -> None:
    """The wallet is written back only when it moved: a retried request id and a second refusal of
    the same kind write no row (the first refusal is remembered, for the key check, and audited)."""
    top_up(client, world, 100)
    assert use(client, world, 60, "first").status_code == 200
    before = rows(db)
    assert use(client, world, 60, "first").get_json()["status"] == "duplicate"
    assert rows(db) == before
    with statements(db) as sent:  # every engine's
        assert use(client, world, 60, "second").status_code == 429
    assert any("UPDATE wallets" in kind for kind in sent), sent  # the refusal, remembered
    before = rows(db)
    with statements(db) as sent:
        assert use(client, world, 60, "third").status_code == 429
    assert rows(db) == before
    assert not any("UPDATE" in kind or "DELETE" in kind for kind in sent), sent  # nothing written, not even back
    assert verify(client, world)["reason"] == "balance_exhausted"


def test_a_batch_answers_each_record(client: FlaskClient, world: World) -> None:
    top_up(client, world, 250)
    records = [{"key_id": world.member_key_id, "model": "m", "cost_micros": 100, "request_id": f"b{n}"}
               for n in range(3)] + [{"key_id": world.owner_key_id, "model": "m", "cost_micros": 50, "request_id": "b9"}]
    response = client.post("/api/v1/usage", headers=world.gateway, json={"usage": records})
    assert response.status_code == 200
    assert [r["status"] for r in response.get_json()["results"]] == ["debited", "debited", "balance_exhausted",
                                                                     "debited"]
    again = client.post("/api/v1/usage", headers=world.gateway, json={"usage": records[:2]})
    assert [r["status"] for r in again.get_json()["results"]] == ["duplicate", "duplicate"]


@pytest.mark.parametrize(("record", "status", "field"), [
    ({"cost_micros": 0}, 400, "usage[1].cost_micros"),
    ({"cost_micros": -5}, 400, "usage[1].cost_micros"),
    ({"cost_micros": 1.5}, 400, "usage[1].cost_micros"),
    ({"cost_micros": 10.0}, 400, "usage[1].cost_micros"),
    ({"cost_micros": "10"}, 400, "usage[1].cost_micros"),
    ({"cost_micros": True}, 400, "usage[1].cost_micros"),
    ({"cost_micros": 10**15 + 1}, 400, "usage[1].cost_micros"),
    ({"request_id": ""}, 400, "usage[1].request_id"),
    ({"request_id": "b0"}, 400, "usage[1].request_id"),  # twice in one call
    ({"request_id": "top_up:x:y"}, 400, "usage[1].request_id"),  # a credit's own key
    ({"model": None}, 400, "usage[1].model"),
    ({"extra": 1}, 400, "usage[1].extra"),
    ({"key_id": "00000000-0000-0000-0000-000000000000"}, 404, "key_id"),
])
def test_bad_usage_is_a_precise_problem_and_writes_nothing(client: FlaskClient, db: Database, world: World,
                                                           record: dict[str, Any], status: int, field: str) -> None:
    top_up(client, world, 1_000)
    before = rows(db)
    good = {"key_id": world.member_key_id, "model": "m", "cost_micros": 10, "request_id": "b0"}
    bad = {**good, "request_id": "b1", **record}
    response = client.post("/api/v1/usage", headers=world.gateway, json={"usage": [good, bad]})
    assert response.status_code == status, response.data
    assert response.get_json()["field"] == field
    assert rows(db) == before


@pytest.mark.parametrize(("body", "field"), [
    ({"amount_micros": 0, "reference": "x"}, "amount_micros"),
    ({"amount_micros": -100, "reference": "x"}, "amount_micros"),
    ({"amount_micros": 99.5, "reference": "x"}, "amount_micros"),
    ({"amount_micros": "100", "reference": "x"}, "amount_micros"),
    ({"amount_micros": 10**16, "reference": "x"}, "amount_micros"),
    ({"reference": "x"}, "amount_micros"),
    ({"amount_micros": 100}, "reference"),
    ({"amount_micros": 100, "reference": "x", "currency": "usd"}, "currency"),
])
def test_bad_top_ups_are_refused_naming_the_field(client: FlaskClient, db: Database, world: World,
                                                  body: dict[str, Any], field: str) -> None:
    before = rows(db)
    response = client.post(f"{world.wallet}/top-ups", headers=world.owner, json=body)
    assert response.status_code == 400 and response.get_json()["field"] == field
    assert rows(db) == before


@pytest.mark.parametrize(("body", "field"), [
    ({"discount_percent": 101}, "discount_percent"), ({"discount_percent": -1}, "discount_percent"),
    ({"discount_percent": 5.5}, "discount_percent"), ({"spend_limit_micros": -1}, "spend_limit_micros"),
    ({"auto_topup": {"threshold_micros": 1}}, "auto_topup"),
    ({"auto_topup": {"threshold_micros": 1, "amount_micros": -1}}, "auto_topup.amount_micros"),
])
def test_bad_controls_are_refused_naming_the_field(client: FlaskClient, db: Database, world: World,
                                                   body: dict[str, Any], field: str) -> None:
    before = rows(db)
    response = client.patch(world.wallet, headers=world.owner, json=body)
    assert response.status_code == 400 and response.get_json()["field"] == field
    assert rows(db) == before


def test_a_limit_below_spend_is_refused_over_http(client: FlaskClient, world: World) -> None:
    top_up(client, world, 1_000)
    use(client, world, 300, "r1")
    response = client.patch(world.wallet, headers=world.owner, json={"spend_limit_micros": 200})
    assert response.status_code == 400 and response.get_json()["field"] == "spend_limit_micros"
    key_limit = client.put(f"{world.wallet}/limits/keys/{world.member_key_id}", headers=world.owner,
                           json={"limit_micros": 100})
    assert key_limit.status_code == 400 and key_limit.get_json()["field"] == "limit_micros"


def test_a_member_may_not_top_up_or_set_limits(client: FlaskClient, db: Database, world: World) -> None:
    before = rows(db)
    refused = client.post(f"{world.wallet}/top-ups", headers=world.member, json={"amount_micros": 5, "reference": "x"})
    assert refused.status_code == 403 and refused.get_json()["code"] == "permission_denied"
    assert client.patch(world.wallet, headers=world.member, json={"discount_percent": 90}).status_code == 403
    assert rows(db) == before
    assert client.get(world.wallet, headers=world.member).status_code == 200  # usage is readable by all


def test_tenant_isolation(client: FlaskClient, db: Database, system: Actor, acme: NewOrg, world: World) -> None:
    with db.transaction() as session:
        rival = orgs.create_org(session, system, "Rival", owner_email="o@rival.test")
        theirs = keys.create_api_key(session, system, rival.org.id, user_id=rival.owner.id,
                                     team_id=rival.default_team_id, name="k", scopes=["admin", "inference"])
    # An org's own API key is not the gateway's credential.
    assert client.post("/api/v1/usage", headers=world.owner, json={
        "key_id": world.member_key_id, "model": "m", "cost_micros": 1, "request_id": "x"}).status_code == 401
    # Another org's admin key reads and writes nothing of this org's wallets.
    assert client.get(world.wallet, headers=bearer(theirs.secret)).status_code == 404
    assert client.post(f"{world.wallet}/top-ups", headers=bearer(theirs.secret),
                       json={"amount_micros": 5, "reference": "x"}).status_code == 404
    rival_wallet = f"/api/v1/orgs/{acme.org.slug}/teams/{rival.default_team_id}/wallet"
    assert client.get(rival_wallet, headers=world.owner).status_code == 404
    limit = client.put(f"{world.wallet}/limits/keys/{theirs.id}", headers=world.owner, json={"limit_micros": 5})
    assert limit.status_code == 404 and limit.get_json()["field"] == "key_id"


def test_spend_per_key_member_and_period_survives_the_members_removal(client: FlaskClient, world: World,
                                                                        acme: NewOrg) -> None:
    top_up(client, world, 10_000)
    use(client, world, 300, "r1")
    use(client, world, 200, "r2", key_id=world.owner_key_id)
    by_key = client.get(f"{world.wallet}/spend?by=key", headers=world.owner).get_json()["spend"]
    assert {(r["key_id"], r["spend_micros"]) for r in by_key} == {(world.member_key_id, 300),
                                                                 (world.owner_key_id, 200)}
    mine = client.get(f"/api/v1/orgs/{acme.org.slug}/members/{world.member_id}/spend", headers=world.member)
    assert [r["spend_micros"] for r in mine.get_json()["spend"]] == [300]
    assert client.delete(f"/api/v1/orgs/{acme.org.slug}/members/{world.member_id}",
                         headers=world.owner).status_code == 204
    by_member = client.get(f"{world.wallet}/spend?by=member", headers=world.owner).get_json()["spend"]
    assert {(r["user_id"], r["spend_micros"], r["removed"]) for r in by_member} == {
        (world.member_id, 300, True), (acme.owner.id, 200, False)}
    per_period = client.get(f"{world.wallet}/spend?by=period", headers=world.owner).get_json()["spend"]
    assert [r["spend_micros"] for r in per_period] == [500]
    ledger = client.get(f"{world.wallet}/ledger", headers=world.owner).get_json()["entries"]
    assert [e["kind"] for e in ledger] == ["usage", "usage", "top_up"]
    assert client.get(f"{world.wallet}/spend?by=colour", headers=world.owner).get_json()["field"] == "by"


def test_the_wallet_routes_are_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "/api/v1/usage" in paths and "/api/v1/orgs/{org}/teams/{team_id}/wallet/top-ups" in paths


def test_sixteen_gateways_at_once_never_overdraw(client: FlaskClient, db: Database, world: World) -> None:
    top_up(client, world, 1_000)
    accepted: list[int] = []
    lock = threading.Lock()

    def gateway(n: int) -> None:
        for i in range(8):
            answer = use(client, world, 10 + n, f"g{n}-{i}")
            assert answer.status_code in (200, 429), answer.data
            if answer.status_code == 200:
                with lock:
                    accepted.append(answer.get_json()["debited_micros"])

    threads = [threading.Thread(target=gateway, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.reading() as session:
        balance = session.get_one(Wallet, world.wallet.split("/")[-2]).balance_micros
        booked = -int(session.scalar(select(func.sum(WalletEntry.amount_micros)).where(WalletEntry.kind == "usage")))
    assert balance >= 0 and booked == sum(accepted) and balance == 1_000 - booked
    from identity.wallet_check import check_wallets
    with db.reading() as session:  # the usage totals kept under the wallet's lock: the ledger's sums
        assert check_wallets(session, session.get_one(Wallet, world.wallet.split("/")[-2]).org_id) == []


def test_the_key_checks_refusal_ends_when_the_period_turns(client: FlaskClient, world: World) -> None:
    top_up(client, world, 1_000)
    client.patch(world.wallet, headers=world.owner, json={"spend_limit_micros": 100})
    assert use(client, world, 100, "p1").status_code == 200
    refused = use(client, world, 100, "p2").get_json()
    assert verify(client, world)["reason"] == "spending_limit_reached"
    resets_at = dt.datetime.fromisoformat(refused["resets_at"])
    with clock.frozen_at(resets_at + dt.timedelta(seconds=1)):
        check = verify(client, world)
        assert check["valid"] is True and check["budget"]["remaining_micros"] == 100
        assert check["budget"]["limits"] == [{"scope": "team", "limit_micros": 100, "spend_micros": 0}]
        assert use(client, world, 100, "p2").get_json()["status"] == "debited"  # the refused id, retried


def test_a_retried_top_up_credits_once(client: FlaskClient, db: Database, world: World) -> None:
    body = {"amount_micros": 500, "reference": "stripe pi_123"}
    assert client.post(f"{world.wallet}/top-ups", headers=world.owner, json=body).status_code == 201
    before = rows(db)
    again = client.post(f"{world.wallet}/top-ups", headers=world.owner, json=body)
    assert again.status_code == 409 and again.get_json()["field"] == "reference"
    assert rows(db) == before
    assert client.get(world.wallet, headers=world.owner).get_json()["balance_micros"] == 500


def test_the_usage_totals_are_the_ledgers_sums_after_every_kind_of_debit(client: FlaskClient, db: Database,
                                                                          world: World, system: Actor,
                                                                          acme: NewOrg) -> None:
    """The totals a wallet page reads (identity.usage keeps them per period and key, and per period and member)
    after debits by a member's key, another's, a service key's, in a batch, a retry and a refusal; and
    `identity billing check` finds a total that is not its ledger's sum."""
    from sqlalchemy import text

    from identity.wallet_check import check_wallets
    with db.transaction() as session:
        service = keys.create_service_key(session, system, acme.org.id, team_id=acme.default_team_id, name="svc",
                                          scopes=["inference"])
    top_up(client, world, 1_000)
    assert use(client, world, 300, "r1").status_code == 200
    assert use(client, world, 300, "r1").status_code == 200  # a retry: booked once
    assert use(client, world, 100, "r2", key_id=world.owner_key_id).status_code == 200
    assert use(client, world, 50, "r3", key_id=service.id).status_code == 200
    batch = [{"key_id": k, "model": "m", "cost_micros": 10, "request_id": f"b{n}"}
             for n, k in enumerate((world.member_key_id, service.id, world.owner_key_id))]
    assert client.post("/api/v1/usage", headers=world.gateway, json={"usage": batch}).status_code == 200
    assert use(client, world, 10_000, "r4").status_code == 429  # refused: no row, no total

    def walk(by: str) -> dict[str | None, tuple[int, int]]:
        seen, after = {}, ""
        while True:
            page = client.get(f"{world.wallet}/spend?by={by}&limit=1&after={after}", headers=world.owner).get_json()
            assert page["spend"], "a `next` led to an empty page: the page before was the last"
            seen |= {r["key_id" if by == "key" else "user_id"]: (r["spend_micros"], r["requests"])
                     for r in page["spend"]}
            if page["next"] is None:
                return seen
            after = page["next"]
    assert walk("key") == {world.member_key_id: (310, 2), world.owner_key_id: (110, 2), service.id: (60, 2)}
    assert walk("member") == {world.member_id: (310, 2), acme.owner.id: (110, 2), None: (60, 2)}
    with db.reading() as session:
        assert check_wallets(session, acme.org.id) == []
    with db.begin() as conn:
        conn.execute(text("UPDATE usage_totals SET requests = requests + 1 WHERE subject_id = ''"))
    with db.reading() as session:
        found = check_wallets(session, acme.org.id)
    assert len(found) == 1 and "usage totals by member (none)" in found[0], found


def test_an_owner_cancels_a_top_up_request_over_http_and_a_member_may_not(client: FlaskClient, world: World,
                                                                          db: Database) -> None:
    """The way out of a team's deletion refused while the payment hook holds its request (409)."""
    top_up(client, world, 2_000)
    auto = {"auto_topup": {"threshold_micros": 5_000, "amount_micros": 10_000}}
    assert client.patch(world.wallet, headers=world.owner, json=auto).status_code == 200  # below: one request
    [request] = client.get(f"{world.wallet}/topup-requests", headers=world.owner).get_json()["topup_requests"]
    url = f"{world.wallet}/topup-requests/{request['id']}/cancel"
    assert client.post(url, headers=world.member).status_code == 403
    cancelled = client.post(url, headers=world.owner)
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled", cancelled.data
    again = client.post(url, headers=world.owner)
    assert again.status_code == 409 and again.get_json()["code"] == "conflict"
    assert client.post(f"{world.wallet}/topup-requests/nope/cancel", headers=world.owner).status_code == 404
