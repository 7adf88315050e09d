"""audit checkpoints: signed (org, seq, hash, time) statements, append-only like the events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 10:20:00
"""
import sqlalchemy as sa
from alembic import op

import audit.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", audit.models.UTCDateTime(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    op.create_index("ix_audit_checkpoints_org_seq", "audit_checkpoints", ["org_id", "seq"])
    _append_only()


def _append_only() -> None:
    """Checkpoints are never changed or removed: an auditor's kept copy must stay provable."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION audit_checkpoints_guard() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit checkpoints are append-only (% refused)', TG_OP;
            END $$""")
        op.execute("CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints "
                   "FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_guard()")
    else:
        op.execute("CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints "
                   "BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only (UPDATE refused)'); END")
        op.execute("CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints "
                   "BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only (DELETE refused)'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_checkpoints_append_only ON audit_checkpoints")
        op.execute("DROP FUNCTION audit_checkpoints_guard()")
    else:
        op.execute("DROP TRIGGER audit_checkpoints_no_update")
        op.execute("DROP TRIGGER audit_checkpoints_no_delete")
    op.drop_index("ix_audit_checkpoints_org_seq", table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
