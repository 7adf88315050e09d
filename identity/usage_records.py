"""The records of a usage call (DESIGN.md 3.8), checked whole before anything is written, and
what became of each: the gateway's wire fields read into plain values, with no database.
`identity.usage` (which debits them) re-exports these names: the adapters ask it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from identity.errors import InvalidValue
from identity.wallet_periods import BALANCE_EXHAUSTED, SPENDING_LIMIT_REACHED
from identity.wallets import amount

MAX_BATCH = 1000
# A record's own refusal: its cost would take the team's period cost past identity.wallets.MAX_TOTAL.
# Not a state of the wallet: the key check is not told. Refused all the same (never debited, never
# answered as if booked): 422 for one record, its status beside the others' in a batch.
AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
# The ledger's own idempotency keys for credits (identity.wallets._reference_key), never a gateway's.
REFUSALS = (BALANCE_EXHAUSTED, SPENDING_LIMIT_REACHED, AMOUNT_OUT_OF_RANGE)
RESERVED = ("top_up:", "seat_grant:", "refund:", "adjustment:")


@dataclass(frozen=True)
class UsageRecord:
    key_id: str
    model: str
    cost_micros: int
    request_id: str


@dataclass
class Outcome:
    """What became of one record: `debited`, `duplicate` (booked before) or a refusal code."""

    request_id: str
    status: str
    team_id: str
    debited_micros: int = 0
    # The team's balance after the call and what the key may still spend (the key check's
    # budget.remaining_micros); None, not told, for a duplicate first booked by another team's key.
    balance_micros: int | None = 0
    remaining_micros: int | None = 0
    resets_at: dt.datetime | None = None
    # What refused it: `team` for balance_exhausted (the team's balance); team, key or member for
    # spending_limit_reached.
    limit_scope: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        """Whether the record was refused, not booked: any status but `debited` and `duplicate`."""
        return self.status in REFUSALS


def _text(item: dict[str, Any], name: str, where: str, limit: int) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidValue(f"{where}{name} is required: a string of up to {limit} characters", field=f"{where}{name}")
    return value


def parse_records(items: list[Any], *, batch: bool) -> list[UsageRecord]:
    """Check every record of a call (field names say which: `usage[3].cost_micros`); refuse the call on any."""
    if not items or len(items) > MAX_BATCH:
        raise InvalidValue(f"usage must hold 1 to {MAX_BATCH} records", field="usage")
    records, seen = [], set()
    for index, item in enumerate(items):
        where = f"usage[{index}]." if batch else ""
        if not isinstance(item, dict):
            raise InvalidValue(f"{where or 'the record '}must be an object", field=where.rstrip(".") or "usage")
        unknown = sorted(set(item) - {"key_id", "model", "cost_micros", "request_id"})
        if unknown:
            raise InvalidValue(f"unknown fields: {', '.join(map(repr, unknown))}", field=f"{where}{unknown[0]}")
        record_ = UsageRecord(_text(item, "key_id", where, 36), _text(item, "model", where, 200),
                              amount(item.get("cost_micros"), f"{where}cost_micros"),
                              _text(item, "request_id", where, 200))
        if record_.request_id.startswith(RESERVED):  # the ledger's own idempotency keys for credits
            raise InvalidValue(f"request_id must not begin with {' or '.join(RESERVED)}", field=f"{where}request_id")
        if record_.request_id in seen:
            raise InvalidValue(f"request_id {record_.request_id!r} appears twice in one call",
                               field=f"{where}request_id")
        seen.add(record_.request_id)
        records.append(record_)
    return records
