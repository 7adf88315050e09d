"""Admin API: team wallets (DESIGN.md 3.8) under `/api/v1/orgs/<org>/teams/<team_id>/wallet`.

Reads (the wallet, spend per key, member or period, limits) for anyone of the org; the ledger and
top-up requests for owners and admins; top-ups for owners (admins where `admins_may_top_up`);
limits, discount, auto top-up, refunds and adjustments for owners. Amounts are JSON integers in
micro-cents: a float, a string or a bool is refused (400 naming the field), never converted.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify

from identity import spend, topups, wallet_controls, wallets
from identity.errors import InvalidValue
from identity.paging import Position
from identity.roles import authorize
from identity.service import run
from identity.wallet_models import SpendLimit, TopUpRequest, WalletEntry
from identity.web.api.common import ADMIN, USAGE_READ, adopt, authenticated, caller_org_id, json_body, when
from identity.web.api.query import LIMIT_QUERY, LIMIT_SCHEMA, int_arg, list_page, one_arg, page_limit
from identity.web.context import database

bp = adopt(Blueprint("api_wallets", __name__, url_prefix="/api/v1"))
WALLET = "/orgs/<org_ref>/teams/<team_id>/wallet"


def _wallet(org_id: str, team_id: str) -> Response:
    with database().reading() as session:
        return jsonify(spend.get_wallet(session, g.actor, org_id, team_id).as_dict())


def entry_json(entry: WalletEntry) -> dict[str, Any]:
    return {"id": entry.id, "kind": entry.kind, "amount_micros": entry.amount_micros, "cost_micros": entry.cost_micros,
            "discount_percent": entry.discount_percent, "key_id": entry.key_id, "user_id": entry.user_id,
            "model": entry.model, "request_id": entry.request_id, "reference": entry.reference,
            "period_start": when(entry.period_start), "created": when(entry.created_at),
            "actor": {"type": entry.actor_type, "id": entry.actor_id}}


def limit_json(row: SpendLimit) -> dict[str, Any]:
    return {"subject_type": row.subject_type, "subject_id": row.subject_id, "limit_micros": row.limit_micros,
            "period_start": when(row.period_start), "spend_micros": row.spend_micros}


def topup_json(row: TopUpRequest) -> dict[str, Any]:
    return {"id": row.id, "status": row.status, "amount_micros": row.amount_micros,
            "threshold_micros": row.threshold_micros, "balance_micros": row.balance_micros,
            "attempts": row.attempts, "last_error": row.last_error, "created": when(row.created_at),
            "delivered": when(row.delivered_at), "fulfilled": when(row.fulfilled_at)}


@bp.get(WALLET)
@authenticated(scope=USAGE_READ)
def get_wallet(org_ref: str, team_id: str) -> Response:
    """The balance, this period's spend and limit, what is left, the discount, auto top-up and any refusal."""
    return _wallet(caller_org_id(org_ref), team_id)


@bp.patch(WALLET)
@authenticated(scope=ADMIN)
def configure_wallet(org_ref: str, team_id: str) -> Response:
    """Change the period limit (null: none), the discount percent, or the auto top-up (null: off)."""
    org_id = caller_org_id(org_ref)
    data = json_body("spend_limit_micros", "discount_percent", "auto_topup")
    names = {"spend_limit_micros": "spend_limit", "discount_percent": "discount_percent", "auto_topup": "auto_topup"}
    run(database(), g.actor, wallet_controls.configure_wallet, org_id, team_id,
        **{names[name]: value for name, value in data.items()})
    return _wallet(org_id, team_id)


def _money(*extra: str) -> dict[str, Any]:
    data = json_body("amount_micros", "reference", *extra)
    if "amount_micros" not in data:
        raise InvalidValue("amount_micros is required: an integer number of micro-cents", field="amount_micros")
    return data


@bp.post(f"{WALLET}/top-ups")
@authenticated(scope=ADMIN)
def top_up(org_ref: str, team_id: str) -> tuple[Response, int]:
    """Credit the team with `amount_micros` paid under `reference`."""
    org_id, data = caller_org_id(org_ref), _money()
    entry = run(database(), g.actor, wallets.top_up, org_id, team_id, data["amount_micros"], data.get("reference"))
    return jsonify(entry_json(entry)), 201


@bp.post(f"{WALLET}/credits")
@authenticated(scope=ADMIN)
def add_credit(org_ref: str, team_id: str) -> tuple[Response, int]:
    """A refund (positive) or an adjustment (either sign, never below a zero balance), with its reason."""
    org_id, data = caller_org_id(org_ref), _money("kind")
    entry = run(database(), g.actor, wallets.add_credit, org_id, team_id, data.get("kind"), data["amount_micros"],
                data.get("reference"))
    return jsonify(entry_json(entry)), 201


@bp.get(f"{WALLET}/spend")
@authenticated(scope=USAGE_READ)
def get_spend(org_ref: str, team_id: str) -> Response:
    """Usage grouped ?by=key|member (in ?period=<a time in it>, default now), a page of up to ?limit= (1 to
    500, default 100) in id order after ?after=<`next`>; or ?by=period, every period."""
    org_id = caller_org_id(org_ref)
    limit = page_limit()
    with database().reading() as session:  # one row more than the page: whether another follows
        rows = spend.spend(session, g.actor, org_id, team_id, by=one_arg("by", "key"),
                           period=one_arg("period"), limit=limit + 1, after=one_arg("after", ""))
    page, following = spend.page_of(rows, limit)
    return jsonify({"spend": page, "next": following})


@bp.get(f"{WALLET}/ledger")
@authenticated(scope=ADMIN)
def get_ledger(org_ref: str, team_id: str) -> Response:
    """The ledger, newest first: ?limit= (1 to 500) and ?before=<entry id> (`next` of the previous page)."""
    org_id = caller_org_id(org_ref)
    limit = page_limit()
    before = int_arg("before", 0) or None
    with database().reading() as session:  # one more than a page: `next` is null on the last one
        rows = spend.ledger(session, g.actor, org_id, team_id, limit=limit + 1, before=before)
    page = rows[:limit]
    return jsonify({"entries": [entry_json(e) for e in page], "next": page[-1].id if len(rows) > limit else None})


@bp.get(f"{WALLET}/limits")
@authenticated(scope=USAGE_READ)
def get_limits(org_ref: str, team_id: str) -> Response:
    """The per-key and per-member limits, oldest first, in pages as every list (?limit=&after=<next>)."""
    org_id = caller_org_id(org_ref)
    return list_page("limits", lambda session, window: spend.subject_limits(session, g.actor, org_id, team_id, window),
                     limit_json, lambda row: Position(row.created_at, row.id))


def _set_limit(org_ref: str, team_id: str, subject_type: str, subject_id: str) -> Response:
    org_id = caller_org_id(org_ref)
    data = json_body("limit_micros")
    if "limit_micros" not in data:
        raise InvalidValue("limit_micros is required (null removes the limit)", field="limit_micros")
    row = run(database(), g.actor, wallet_controls.set_subject_limit, org_id, team_id, subject_type, subject_id,
              data["limit_micros"])
    return jsonify(limit_json(row) if row else {"subject_type": subject_type, "subject_id": subject_id,
                                                "limit_micros": None})


@bp.put(f"{WALLET}/limits/keys/<key_id>")
@authenticated(scope=ADMIN)
def set_key_limit(org_ref: str, team_id: str, key_id: str) -> Response:
    """Set a key's period limit; null removes it."""
    return _set_limit(org_ref, team_id, wallet_controls.KEY, key_id)


@bp.put(f"{WALLET}/limits/members/<user_id>")
@authenticated(scope=ADMIN)
def set_member_limit(org_ref: str, team_id: str, user_id: str) -> Response:
    """Set a member's period limit within the team (all their keys there); null removes it."""
    return _set_limit(org_ref, team_id, wallet_controls.MEMBER, user_id)


@bp.get(f"{WALLET}/topup-requests")
@authenticated(scope=ADMIN)
def get_topup_requests(org_ref: str, team_id: str) -> Response:
    """The auto top-up's requests, newest first, in pages (?limit=&after=<next>): pending ones await the
    payment hook (or a top-up)."""
    org_id = caller_org_id(org_ref)
    return list_page("topup_requests", lambda session, window: topups.list_requests(session, g.actor, org_id,
                                                                                    team_id, window),
                     topup_json, lambda row: Position(row.created_at, row.id))


@bp.post(f"{WALLET}/topup-requests/<request_id>/cancel")
@authenticated(scope=ADMIN)
def cancel_topup_request(org_ref: str, team_id: str, request_id: str) -> Response:
    """Owners: cancel a request not yet paid, the payment hook's included (before deleting the team)."""
    found = run(database(), g.actor, topups.cancel_request, caller_org_id(org_ref), team_id, request_id)
    return jsonify(topup_json(found))


@bp.get("/orgs/<org_ref>/members/<user_id>/spend")
@authenticated(scope=USAGE_READ)
def get_member_spend(org_ref: str, user_id: str) -> Response:
    """The member's keys' spend this period, per team and key (kept after the member is removed)."""
    org_id = caller_org_id(org_ref)
    with database().reading() as session:
        rows = spend.member_spend(session, g.actor, org_id, user_id)
    return jsonify({"spend": rows})


def _settings_json(found: Any) -> dict[str, Any]:
    return {"admins_may_top_up": bool(found.admins_may_top_up), "seat_usage_micros": int(found.seat_usage_micros)}


@bp.get("/orgs/<org_ref>/wallet-settings")
@authenticated(scope=ADMIN)
def get_wallet_settings(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    with database().reading() as session:
        authorize(g.actor, "billing.read", org_id=org_id)
        return jsonify(_settings_json(wallets.settings_of(session, org_id)))


@bp.patch("/orgs/<org_ref>/wallet-settings")
@authenticated(scope=ADMIN)
def change_wallet_settings(org_ref: str) -> Response:
    """Owners: whether admins may top up, and the included usage each seat brings per cycle."""
    org_id = caller_org_id(org_ref)
    data = json_body("admins_may_top_up", "seat_usage_micros")
    found = run(database(), g.actor, wallet_controls.set_settings, org_id, **data)
    return jsonify(_settings_json(found))


def openapi_paths(op: Any, json_response: Any, ref: Any) -> dict[str, Any]:
    """This blueprint's operations, built with the admin API document's own helpers."""
    team = ("org", "team_id")
    wallet = "/api/v1/orgs/{org}/teams/{team_id}/wallet"
    page = [LIMIT_QUERY,
            ("before", {"type": "integer"}, "`next` of the previous page: entries older than this id")]
    paging = [LIMIT_QUERY,
              ("after", {"type": "string"}, "`next` of the previous page")]
    by = [("by", {"type": "string", "enum": list(spend.BY)}, "group by key (default), member or period"),
          ("period", {"type": "string"}, "a time within the billing period to show (default: now)"),
          ("limit", LIMIT_SCHEMA, "by key or member: " + LIMIT_QUERY[2]),
          ("after", {"type": "string"}, "by key or member: `next` of the previous page")]
    return {
        wallet: {"get": op("A team's wallet: balance, this period's spend, limit, what is left, discount, auto top-up, "
                           "refusal", json_response(ref("Wallet")), params=team),
                 "patch": op("Owners: change the period spending limit (null: none), discount percent (0-100) or auto "
                             "top-up (null: off)", json_response(ref("Wallet")), body="WalletChange", params=team)},
        f"{wallet}/top-ups": {"post": op("Top up the team (owners; admins where admins_may_top_up)",
                                         json_response(ref("WalletEntry")), body="TopUp", params=team, status="201")},
        f"{wallet}/credits": {"post": op("Owners: a refund or an adjustment", json_response(ref("WalletEntry")),
                                         body="Credit", params=team, status="201")},
        f"{wallet}/spend": {"get": op("Usage per key or member (a page in id order, from the period's totals) or per "
                                      "period (removed members' included)",
                                      json_response({"type": "object"}), params=team, query=by)},
        f"{wallet}/ledger": {"get": op("The ledger, newest first (owners and admins)",
                                       json_response({"type": "object"}), params=team, query=page)},
        f"{wallet}/limits": {"get": op("The per-key and per-member limits, oldest first (keyset pages)",
                                       json_response({"type": "object"}), params=team, query=paging)},
        f"{wallet}/limits/keys/{{key_id}}": {"put": op(
            "Owners: set a key's period limit; null removes it", json_response({"type": "object"}),
            body="SubjectLimit", params=(*team, "key_id"))},
        f"{wallet}/limits/members/{{user_id}}": {"put": op(
            "Owners: set a member's period limit in the team; null removes it", json_response({"type": "object"}),
            body="SubjectLimit", params=(*team, "user_id"))},
        f"{wallet}/topup-requests": {"get": op("The auto top-up's requests, newest first (owners and admins; keyset "
                                               "pages)", json_response({"type": "object"}), params=team, query=paging)},
        f"{wallet}/topup-requests/{{request_id}}/cancel": {"post": op(
            "Owners: cancel a top-up request not yet paid, one the payment hook holds included (a team is not "
            "deleted while the hook holds one: 409); 409 while it is being delivered",
            json_response({"type": "object"}), params=(*team, "request_id"))},
        "/api/v1/orgs/{org}/members/{user_id}/spend": {"get": op(
            "A member's keys' spend this period, per team and key", json_response({"type": "object"}),
            params=("org", "user_id"))},
        "/api/v1/orgs/{org}/wallet-settings": {
            "get": op("The org's wallet settings (owners and admins)", json_response(ref("WalletSettings")),
                      params=("org",)),
            "patch": op("Owners: whether admins may top up; the usage each seat brings per cycle",
                        json_response(ref("WalletSettings")), body="WalletSettings", params=("org",))},
    }


MICROS = {"type": "integer", "minimum": 1, "maximum": wallets.MAX_AMOUNT}
LIMIT_MICROS = {"type": ["integer", "null"], "minimum": 0, "maximum": wallets.MAX_AMOUNT}  # 0: stop it now
OPENAPI_SCHEMAS: dict[str, Any] = {
    "Wallet": {"type": "object", "properties": {
        "team_id": {"type": "string"}, "balance_micros": {"type": "integer"}, "period": {"type": "object"},
        "period_spend_micros": {"type": "integer"}, "spend_limit_micros": {"type": ["integer", "null"]},
        "remaining_micros": {"type": "integer", "description": "what the team's keys may still spend this period: "
                             "the balance, bounded by the team's spending limit less its spend (a key's or "
                             "member's own limit may bound one key further: the key check's "
                             "budget.remaining_micros)"},
        "discount_percent": {"type": "integer"},
        "auto_topup": {"type": ["object", "null"]}, "refusal": {"type": ["string", "null"]},
        "resets_at": {"type": "string"}, "pending_topup_id": {"type": ["string", "null"]}}},
    "WalletChange": {"type": "object", "additionalProperties": False, "properties": {
        "spend_limit_micros": LIMIT_MICROS, "discount_percent": {"type": "integer", "minimum": 0, "maximum": 100},
        "auto_topup": {"type": ["object", "null"], "additionalProperties": False,
                       "required": ["threshold_micros", "amount_micros"],
                       "properties": {"threshold_micros": MICROS, "amount_micros": MICROS}}}},
    "TopUp": {"type": "object", "additionalProperties": False, "required": ["amount_micros", "reference"],
              "properties": {"amount_micros": MICROS, "reference": {"type": "string", "minLength": 1,
                                                                      "maxLength": 200}}},
    "Credit": {"type": "object", "additionalProperties": False, "required": ["kind", "amount_micros", "reference"],
               "properties": {"kind": {"type": "string", "enum": [wallets.REFUND, wallets.ADJUSTMENT]},
                              "amount_micros": {"type": "integer"},
                              "reference": {"type": "string", "minLength": 1, "maxLength": 200}}},
    "SubjectLimit": {"type": "object", "additionalProperties": False, "required": ["limit_micros"],
                     "properties": {"limit_micros": LIMIT_MICROS}},
    "WalletEntry": {"type": "object", "properties": {
        "id": {"type": "integer"}, "kind": {"type": "string"}, "amount_micros": {"type": "integer"},
        "reference": {"type": ["string", "null"]}, "created": {"type": "string"}}},
    "WalletSettings": {"type": "object", "additionalProperties": False, "properties": {
        "admins_may_top_up": {"type": "boolean"},
        "seat_usage_micros": {"type": "integer", "minimum": 0, "maximum": wallets.MAX_AMOUNT}}},
}
