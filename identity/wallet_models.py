"""The team wallets' tables (DESIGN.md 3.8): wallets, their ledger, spend limits, top-up requests.

Money is integer micro-cents (1 cent = 1,000,000) in BIGINT columns; nothing here is a float.
No table has a foreign key into the teams or users: a wallet's ledger is a financial record and
outlives the team, key or member it names (removing a member keeps their past spend). Imported by
identity.migrations' environment and by the modules that use them, so that the tables are on the
domain's metadata (identity.models stays the home of the identity tables).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from identity.models import Base

__all__ = ["Wallet", "WalletEntry", "UsageTotal", "SpendLimit", "TopUpRequest", "WalletSettings"]

MICROS = BigInteger()
UUID = String(36)


class Wallet(Base):
    """A team's balance, its spend in the current billing period and its controls.

    `balance_micros` is the sum of the team's ledger; `period_spend_micros` the usage debited since
    `period_start` (the org's billing cycle). `refusal` remembers the last refused debit
    (`balance_exhausted`, `spending_limit_reached`) until a credit, a higher limit or (for the limit)
    the next period clears it: the key check answers it meanwhile.
    """

    __tablename__ = "wallets"

    team_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    org_id: Mapped[str] = mapped_column(UUID, index=True)
    balance_micros: Mapped[int] = mapped_column(MICROS, default=0)
    period_start: Mapped[dt.datetime]
    period_spend_micros: Mapped[int] = mapped_column(MICROS, default=0)
    spend_limit_micros: Mapped[int | None] = mapped_column(MICROS)
    discount_percent: Mapped[int] = mapped_column(Integer, default=0)
    auto_topup_threshold_micros: Mapped[int | None] = mapped_column(MICROS)
    auto_topup_amount_micros: Mapped[int | None] = mapped_column(MICROS)
    pending_topup_id: Mapped[str | None] = mapped_column(UUID)
    refusal: Mapped[str | None] = mapped_column(String(32))
    refused_period_start: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    # Whether a key or member of the team has (or had) a limit: set under the wallet's lock by whoever
    # adds one, so that a debit waiting on that lock reads it as the lock's holder left it (a subquery
    # would read it as it was before the wait, on PostgreSQL). A debit reads the limits only when set.
    has_subject_limits: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # The usage's cost (before the discount) since `period_start`: every key's and member's usage totals
    # of the period are at most it, so bounding it (identity.wallets.MAX_TOTAL) bounds them all.
    period_cost_micros: Mapped[int] = mapped_column(MICROS, default=0, server_default=text("0"))


class WalletEntry(Base):
    """One row of a team's append-only ledger: a credit (positive) or a usage debit (negative).

    `request_id` is the idempotency key: the gateway's request id for usage, `seat_grant:<team>:<cycle>`
    for a cycle's included usage; unique, so a retry never writes a second row.
    """

    __tablename__ = "wallet_entries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(UUID)
    team_id: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(16))  # top_up, seat_grant, refund, adjustment, usage
    amount_micros: Mapped[int] = mapped_column(MICROS)
    cost_micros: Mapped[int | None] = mapped_column(MICROS)  # usage: the cost before the discount
    discount_percent: Mapped[int | None] = mapped_column(Integer)
    key_id: Mapped[str | None] = mapped_column(UUID)
    user_id: Mapped[str | None] = mapped_column(UUID)
    model: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(200))
    reference: Mapped[str | None] = mapped_column(String(200))
    period_start: Mapped[dt.datetime]
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime]

    __table_args__ = (
        Index("uq_wallet_entries_request", "request_id", unique=True,
              sqlite_where=text("request_id IS NOT NULL"), postgresql_where=text("request_id IS NOT NULL")),
        Index("ix_wallet_entries_team_period", "team_id", "period_start", "kind"),
        Index("ix_wallet_entries_key", "key_id"),
        Index("ix_wallet_entries_user_period", "user_id", "period_start", "kind"),  # a member's spend
        Index("ix_wallet_entries_org_created", "org_id", "created_at"),
    )


class UsageTotal(Base):
    """A team's usage in one billing period by one key or one member: the sums of its ledger's usage rows.

    Kept by the debit that writes the rows (identity.usage), in its transaction and under the
    wallet's row lock, so it is exact; `identity billing check` compares it with the ledger. It lets
    a wallet page show spend per key and member without reading the period's every usage row.
    `subject_id` is "" for usage by a service key (no member).
    """

    __tablename__ = "usage_totals"

    team_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    period_start: Mapped[dt.datetime] = mapped_column(primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(8), primary_key=True)  # key, member
    subject_id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(UUID)
    spend_micros: Mapped[int] = mapped_column(MICROS)
    cost_micros: Mapped[int] = mapped_column(MICROS)
    requests: Mapped[int] = mapped_column(BigInteger)


class SpendLimit(Base):
    """A spending limit per billing period on one key or one member of a team, with its period's spend."""

    __tablename__ = "spend_limits"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(UUID)
    team_id: Mapped[str] = mapped_column(String(80))
    subject_type: Mapped[str] = mapped_column(String(8))  # key, member
    subject_id: Mapped[str] = mapped_column(UUID)
    limit_micros: Mapped[int] = mapped_column(MICROS)
    period_start: Mapped[dt.datetime]
    spend_micros: Mapped[int] = mapped_column(MICROS, default=0)
    refused_period_start: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]

    __table_args__ = (Index("uq_spend_limits_subject", "team_id", "subject_type", "subject_id", unique=True),
                      Index("ix_spend_limits_subject", "subject_id"))


class TopUpRequest(Base):
    """A pending top-up raised by the auto top-up, handed to the operator's payment hook (or listed)."""

    __tablename__ = "topup_requests"

    id: Mapped[str] = mapped_column(UUID, primary_key=True)
    org_id: Mapped[str] = mapped_column(UUID)
    team_id: Mapped[str] = mapped_column(String(80))
    amount_micros: Mapped[int] = mapped_column(MICROS)
    threshold_micros: Mapped[int] = mapped_column(MICROS)
    balance_micros: Mapped[int] = mapped_column(MICROS)  # the balance that crossed the threshold
    # pending, failed, delivered, fulfilled, cancelled (its team deleted before delivery)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[dt.datetime]
    delivered_at: Mapped[dt.datetime | None]
    fulfilled_at: Mapped[dt.datetime | None]
    claimed_until: Mapped[dt.datetime | None]
    # After a failed delivery, not before (identity.topups.retry_after: the hook's outage is waited out,
    # not spent in one burst of attempts); None: at once.
    next_attempt_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_topup_requests_team", "team_id", "created_at"),
                      Index("ix_topup_requests_status", "status", "created_at"))


class WalletSettings(Base):
    """An org's wallet settings: whether admins may top up, and the usage each seat brings per cycle."""

    __tablename__ = "wallet_settings"

    org_id: Mapped[str] = mapped_column(UUID, primary_key=True)
    admins_may_top_up: Mapped[bool] = mapped_column(Boolean, default=False)
    seat_usage_micros: Mapped[int] = mapped_column(MICROS, default=0)
