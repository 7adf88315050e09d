"""Users' email addresses in a table of their own, so that email filters use an index.

Revision ID: 0010
Revises: 0009
"""
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    table = op.create_table(
        "user_emails",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(36), sa.ForeignKey("orgs.id"), nullable=False),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("value", sa.String(320), nullable=False),
        sa.Column("type", sa.String(64), nullable=True),
        sa.Column("primary", sa.Boolean(), nullable=False),
        sa.Column("display", sa.String(320), nullable=True),
    )
    op.create_index("ix_user_emails_value", "user_emails", ["value"])
    op.create_index("ix_user_emails_user", "user_emails", ["user_id"])
    _backfill(table)


def _rows(org_id: str, user_id: str, attributes: Any, email: str | None) -> list[dict[str, Any]]:
    # The rule of identity.emails as it stood at this revision (a migration does not follow later code).
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    sent = (attributes or {}).get("emails")
    items: list[Any] = list(sent) if sent else ([{"value": email, "type": "work", "primary": True}] if email else [])
    rows = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str) or not item["value"]:
            continue
        kind, display = item.get("type"), item.get("display")
        rows.append({"org_id": org_id, "user_id": user_id, "value": item["value"].lower()[:320],
                     "type": kind[:64] if isinstance(kind, str) else None,
                     "primary": item.get("primary") is True or str(item.get("primary")).lower() == "true",
                     "display": display[:320] if isinstance(display, str) else None})
    return rows


def _backfill(table: sa.Table) -> None:
    bind = op.get_bind()
    users = sa.table("users", sa.column("id"), sa.column("org_id"), sa.column("email"),
                     sa.column("attributes", sa.JSON()))
    last = ""
    while True:
        batch = bind.execute(sa.select(users.c.id, users.c.org_id, users.c.email, users.c.attributes)
                             .where(users.c.id > last).order_by(users.c.id).limit(BATCH)).all()
        if not batch:
            return
        rows = [row for user in batch for row in _rows(user.org_id, user.id, user.attributes, user.email)]
        if rows:
            bind.execute(sa.insert(table), rows)
        last = batch[-1].id


def downgrade() -> None:
    op.drop_table("user_emails")
