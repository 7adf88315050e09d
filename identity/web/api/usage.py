"""Admin API: usage from the gateway, `POST /api/v1/usage` (DESIGN.md 3.8 and 8).

Authenticated with the operator's gateway credential (`Authorization: Bearer gw_...`), as the key
check is. The body is one record `{key_id, model, cost_micros, request_id}` or a batch
`{"usage": [record, ...]}` (up to 1,000). Amounts are JSON integers in micro-cents.

- One record: 200 with what was debited and what is left, or a problem JSON, never a 200 for a
  refused record: 429 (`code` `balance_exhausted` or `spending_limit_reached`, `scope`, `resets_at`),
  or 422 `amount_out_of_range` (the record would take the team's period cost past MAX_TOTAL: no wait
  makes it fit, so not a 429). `Retry-After` comes with a limit's refusal only, which ends when the
  period turns: a balance's ends when a credit lands, at no time a client could be told to wait for.
  A retried `request_id` answers 200 `duplicate` with the first debit, and debits nothing.
  Retried with a key of another team (a gateway that re-resolved the caller's key), the duplicate
  names the team the first attempt debited (`team_id`) and its `debited_micros`, and leaves out
  `balance_micros`, `remaining_micros` (and `resets_at` is null): that team's wallet is not locked
  by the retry, and the retry key's team's numbers would describe a wallet the debit never moved.
- A batch: 200 with a result per record (`status`: debited, duplicate, or the refusal's code,
  `amount_out_of_range` included); when every record was refused, the first refusal's problem
  (429, or 422 for `amount_out_of_range`) with every record's result.
- Bad input (a wrong type, a non-positive or absurd cost, an unknown key): 400/404 problem JSON
  naming the field, and nothing is written for any record of the call.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy.exc import IntegrityError

from audit import Actor, clock
from identity import gateway, topups, usage
from identity.errors import InvalidValue, Unauthenticated
from identity.usage import AMOUNT_OUT_OF_RANGE, Outcome, UsageRecord
from identity.wallet_periods import BALANCE_EXHAUSTED, SPENDING_LIMIT_REACHED
from identity.wallets import MAX_TOTAL
from identity.web.api.common import adopt, json_body, problem, request_actor
from identity.web.context import database

bp = adopt(Blueprint("api_usage", __name__, url_prefix="/api/v1"))


def _credential() -> str:
    kind, _, credential = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("a gateway credential is required: Authorization: Bearer gw_...")
    return credential.strip()


def _records() -> tuple[list[UsageRecord], bool]:
    """The call's records (checked whole: any bad one refuses the call), and whether it was a batch."""
    data = json_body("usage", "key_id", "model", "cost_micros", "request_id")
    batch = "usage" in data
    if batch and len(data) > 1:
        raise InvalidValue("send either one record or {\"usage\": [...]}, not both", field="usage")
    items = data["usage"] if batch else [data]
    if not isinstance(items, list):
        raise InvalidValue("usage must be an array of records", field="usage")
    return usage.parse_records(items, batch=batch), batch


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    body: dict[str, Any] = {"request_id": outcome.request_id, "status": outcome.status, "team_id": outcome.team_id,
                            "debited_micros": outcome.debited_micros}
    for name in ("balance_micros", "remaining_micros"):  # None: not told (a duplicate of another team's debit)
        if getattr(outcome, name) is not None:
            body[name] = getattr(outcome, name)
    body["resets_at"] = outcome.resets_at.isoformat() if outcome.resets_at else None
    if outcome.limit_scope:
        body["scope"] = outcome.limit_scope
    return body


@bp.post("/usage")
def post_usage() -> Response:
    """Debit team wallets for the gateway's usage (one record or a batch), idempotently by request id."""
    actor, outcomes, batch = _record(_credential())
    _deliver_topups(actor)
    results = [outcome_json(o) for o in outcomes]
    refused = [o for o in outcomes if o.refused]
    if refused and len(refused) == len(outcomes):
        first = refused[0]
        response = problem(422 if first.status == AMOUNT_OUT_OF_RANGE else 429, first.status, _detail(first),
                           {"results": results} if batch else results[0])
        if first.status == SPENDING_LIMIT_REACHED and first.resets_at is not None:
            response.headers["Retry-After"] = str(max(1, int((first.resets_at - clock.now()).total_seconds())))
        return response
    return jsonify({"results": results} if batch else results[0])


def _record(credential: str) -> tuple[Actor, list[Outcome], bool]:
    """Check the credential, read the records and debit, in one transaction (the credential first: a
    wrong one is 401 whatever the body). A unique-index clash (the same request id committed
    meanwhile) is retried once, and then answers `duplicate`."""
    for attempt in (1, 2):
        try:
            with database().transaction() as session:
                actor = request_actor(gateway.gateway_actor(session.connection(), credential))
                records, batch = _records()
                outcomes = usage.record_usage(session, actor, records)
                g.topup_requested = bool(session.info.pop(topups.REQUESTED, False))
                return actor, outcomes, batch
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _detail(outcome: Outcome) -> str:
    if outcome.status == AMOUNT_OUT_OF_RANGE:
        return (f"this cost would take the team's cost this period past the largest total a wallet keeps "
                f"({MAX_TOTAL} micro-cents); nothing was debited")
    if outcome.status == BALANCE_EXHAUSTED:
        return f"the team's balance ({outcome.balance_micros} micro-cents) does not cover this request; top up"
    return (f"the {outcome.limit_scope} spending limit for this period is reached; it resets at "
            f"{outcome.resets_at.isoformat() if outcome.resets_at else 'the next period'} or when the limit rises")


def _deliver_topups(actor: Actor) -> None:
    """Hand a just-raised top-up request to the payment hook beside the answer (the CLI retries failures)."""
    hook = topups.configured(current_app.config)
    if hook is None or not g.get("topup_requested"):
        return
    db = database()
    threading.Thread(target=topups.deliver, args=(db, hook, actor), daemon=True, name="topup-hook").start()


def openapi_paths(op: Any, json_response: Any, ref: Any) -> dict[str, Any]:
    """This blueprint's operations, built with the admin API document's own helpers."""
    operation = op("Usage from the gateway (gateway credential `gw_...`): debit the key's team, discount first, "
                   "idempotently by request_id; one record or {usage: [...]}. 429 with code balance_exhausted or "
                   "spending_limit_reached when refused; 422 amount_out_of_range", json_response(ref("UsageResult")),
                   body="Usage")
    operation["responses"]["429"] = {"description": "refused: balance_exhausted or spending_limit_reached (with "
                                     "`scope`; Retry-After, until the period turns, for spending_limit_reached only)",
                                     "content": {"application/problem+json": {"schema": ref("Problem")}}}
    operation["responses"]["422"] = {"description": "refused: amount_out_of_range (the record, or every record of "
                                     "the batch, would take the team's period cost past MAX_TOTAL)",
                                     "content": {"application/problem+json": {"schema": ref("Problem")}}}
    operation["security"] = [{"gateway": []}]
    return {"/api/v1/usage": {"post": operation}}


RECORD = {"type": "object", "additionalProperties": False, "required": ["key_id", "model", "cost_micros", "request_id"],
          "properties": {"key_id": {"type": "string"}, "model": {"type": "string"},
                         "cost_micros": {"type": "integer", "minimum": 1, "maximum": 10**15},
                         "request_id": {"type": "string"}}}
RESULT = {"type": "object", "required": ["request_id", "status"], "properties": {
    "request_id": {"type": "string"}, "status": {"type": "string"}, "team_id": {"type": "string"},
    "debited_micros": {"type": "integer"}, "balance_micros": {"type": "integer"},
    "remaining_micros": {"type": "integer", "description": "what the key may still spend: the balance, bounded by "
                         "each limit (team, key, member) less its spend this period; the key check's "
                         "budget.remaining_micros"},
    "resets_at": {"type": ["string", "null"]},
    "scope": {"type": "string", "enum": ["team", "key", "member"],
              "description": "a refusal's: `team` for balance_exhausted; team, key or member for "
                             "spending_limit_reached"}}}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "Usage": {"oneOf": [RECORD, {"type": "object", "additionalProperties": False, "required": ["usage"],
                                 "properties": {"usage": {"type": "array", "items": RECORD, "minItems": 1,
                                                          "maxItems": usage.MAX_BATCH}}}]},
    "UsageResult": {"oneOf": [RESULT, {"type": "object", "required": ["results"], "additionalProperties": False,
                                       "properties": {"results": {"type": "array", "items": RESULT}}}]},
}
