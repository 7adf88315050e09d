"""Team wallets (issue 18, DESIGN.md 3.8): wallets, their ledger, spend limits, top-up requests, settings.

Money in BIGINT micro-cents. No foreign keys into teams or users: the ledger is a financial
record that outlives the team, key or member it names. Wallets are made when first used
(identity.wallets.ensure_wallet), so existing teams need no rows here.

Revision ID: 0017c
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

import audit.models

revision = "0017c"
down_revision = "0016"
branch_labels = None
depends_on = None

MICROS = sa.BigInteger()
TIME = audit.models.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "wallets",
        sa.Column("team_id", sa.String(80), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("balance_micros", MICROS, nullable=False),
        sa.Column("period_start", TIME, nullable=False),
        sa.Column("period_spend_micros", MICROS, nullable=False),
        sa.Column("spend_limit_micros", MICROS, nullable=True),
        sa.Column("discount_percent", sa.Integer(), nullable=False),
        sa.Column("auto_topup_threshold_micros", MICROS, nullable=True),
        sa.Column("auto_topup_amount_micros", MICROS, nullable=True),
        sa.Column("pending_topup_id", sa.String(36), nullable=True),
        sa.Column("refusal", sa.String(32), nullable=True),
        sa.Column("refused_period_start", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_wallets")),
    )
    op.create_index(op.f("ix_wallets_org_id"), "wallets", ["org_id"])
    op.create_table(
        "wallet_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("team_id", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount_micros", MICROS, nullable=False),
        sa.Column("cost_micros", MICROS, nullable=True),
        sa.Column("discount_percent", sa.Integer(), nullable=True),
        sa.Column("key_id", sa.String(36), nullable=True),
        sa.Column("user_id", sa.String(36), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("reference", sa.String(200), nullable=True),
        sa.Column("period_start", TIME, nullable=False),
        sa.Column("actor_type", sa.String(20), nullable=False),
        sa.Column("actor_id", sa.String(80), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_entries")),
    )
    op.create_index("uq_wallet_entries_request", "wallet_entries", ["request_id"], unique=True,
                    sqlite_where=sa.text("request_id IS NOT NULL"),
                    postgresql_where=sa.text("request_id IS NOT NULL"))
    op.create_index("ix_wallet_entries_team_period", "wallet_entries", ["team_id", "period_start", "kind"])
    op.create_index("ix_wallet_entries_key", "wallet_entries", ["key_id"])
    op.create_index("ix_wallet_entries_org_created", "wallet_entries", ["org_id", "created_at"])
    op.create_table(
        "spend_limits",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("team_id", sa.String(80), nullable=False),
        sa.Column("subject_type", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("limit_micros", MICROS, nullable=False),
        sa.Column("period_start", TIME, nullable=False),
        sa.Column("spend_micros", MICROS, nullable=False),
        sa.Column("refused_period_start", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spend_limits")),
    )
    op.create_index("uq_spend_limits_subject", "spend_limits", ["team_id", "subject_type", "subject_id"], unique=True)
    op.create_index("ix_spend_limits_subject", "spend_limits", ["subject_id"])
    op.create_table(
        "topup_requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("team_id", sa.String(80), nullable=False),
        sa.Column("amount_micros", MICROS, nullable=False),
        sa.Column("threshold_micros", MICROS, nullable=False),
        sa.Column("balance_micros", MICROS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("delivered_at", TIME, nullable=True),
        sa.Column("fulfilled_at", TIME, nullable=True),
        sa.Column("claimed_until", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topup_requests")),
    )
    op.create_index("ix_topup_requests_team", "topup_requests", ["team_id", "created_at"])
    op.create_index("ix_topup_requests_status", "topup_requests", ["status", "created_at"])
    op.create_table(
        "wallet_settings",
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("admins_may_top_up", sa.Boolean(), nullable=False),
        sa.Column("seat_usage_micros", MICROS, nullable=False),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_wallet_settings")),
    )


def downgrade() -> None:
    for table in ("wallet_settings", "topup_requests", "spend_limits", "wallet_entries", "wallets"):
        op.drop_table(table)
