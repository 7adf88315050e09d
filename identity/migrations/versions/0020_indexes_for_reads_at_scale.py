"""Indexes for reads that must not grow with the org (the scale review).

- role_grants (team_id, id, user_id) replaces (team_id): a page of a team's members, and its member count
  up to a cap, walk the index in the order grants were made instead of reading and sorting the
  whole team; new grants still go at the end of their team's range (not (team_id, user_id), which
  scatters a group PATCH's writes over a big team: tests/identity/test_group_pages.py).
- wallet_entries (user_id, period_start, kind): a member's spend this period reads their rows only.
- usage_totals: a team's usage per period and key, and per period and member, kept by each debit
  (identity.usage), filled here from the ledger's usage rows.
- audit_events (org_id, action|actor_id|target_id, seq) replace (org_id, action) and (org_id,
  target_id): a page of the log filtered to one of them is the newest rows of one index range.
  Plain CREATE INDEX, never a batch ALTER: on SQLite a batch copies the table and drops the
  append-only triggers; on PostgreSQL an index leaves the guard triggers as they are.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

AUDIT = (("ix_audit_events_org_action_seq", ["org_id", "action", "seq"]),
         ("ix_audit_events_org_actor_seq", ["org_id", "actor_id", "seq"]),
         ("ix_audit_events_org_target_seq", ["org_id", "target_id", "seq"]))
AUDIT_BEFORE = (("ix_audit_events_org_action", ["org_id", "action"]),
                ("ix_audit_events_org_target", ["org_id", "target_id"]))


TOTALS = ("INSERT INTO usage_totals (team_id, period_start, subject_type, subject_id, org_id, spend_micros, "
          "cost_micros, requests) SELECT team_id, period_start, '{kind}', COALESCE({column}, ''), MIN(org_id), "
          "-SUM(amount_micros), SUM(COALESCE(cost_micros, 0)), COUNT(*) FROM wallet_entries WHERE kind = 'usage' "
          "GROUP BY team_id, period_start, COALESCE({column}, '')")


def upgrade() -> None:
    op.create_table(
        "usage_totals",
        sa.Column("team_id", sa.String(80), nullable=False),
        sa.Column("period_start", sa.DateTime(), nullable=False),
        sa.Column("subject_type", sa.String(8), nullable=False),
        sa.Column("subject_id", sa.String(36), nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("spend_micros", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "period_start", "subject_type", "subject_id", name="pk_usage_totals"))
    for kind, column in (("key", "key_id"), ("member", "user_id")):
        op.execute(TOTALS.format(kind=kind, column=column))
    op.create_index("ix_role_grants_team_grant", "role_grants", ["team_id", "id", "user_id"])
    op.drop_index("ix_role_grants_team", table_name="role_grants")
    op.create_index("ix_wallet_entries_user_period", "wallet_entries", ["user_id", "period_start", "kind"])
    for name, columns in AUDIT:
        op.create_index(name, "audit_events", columns)
    for name, _ in AUDIT_BEFORE:
        op.drop_index(name, table_name="audit_events")


def downgrade() -> None:
    for name, columns in AUDIT_BEFORE:
        op.create_index(name, "audit_events", columns)
    for name, _ in AUDIT:
        op.drop_index(name, table_name="audit_events")
    op.drop_index("ix_wallet_entries_user_period", table_name="wallet_entries")
    op.create_index("ix_role_grants_team", "role_grants", ["team_id"])
    op.drop_index("ix_role_grants_team_grant", table_name="role_grants")
    op.drop_table("usage_totals")
