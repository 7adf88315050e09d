"""audit: a purge's DELETE is let through only by the purge itself; no TRUNCATE of the audit tables

Revision ID: 0013a
Revises: 0012

Until now the PostgreSQL trigger let a DELETE of events through whenever a row for the org
existed in `audit_purge_permits`, a row that any role allowed to write the tables could insert.
Now it lets a DELETE through only while the transaction-local setting `identity.audit_purge`
names the event's org (`set_config(..., true)`: other transactions never see it, it ends with the
transaction, and no row can stand in for it), and only for an event at or before the org's chain
base, which the purge moves first. Why a setting and not a SECURITY DEFINER function:
audit/retention.py. UPDATE stays refused always; TRUNCATE, which row triggers do not see, is
refused now on both audit tables.

SQLite has no transaction-local settings: its DELETE trigger keeps the permit row, and now also
requires the event to be at or before the chain base. Whoever holds the SQLite file can rewrite
it; docs/audit.md (threat model) says what the embedded default cannot promise.
"""

from alembic import op

revision = "0013a"
down_revision = "0012"
branch_labels = None
depends_on = None

GUARD = """
    CREATE OR REPLACE FUNCTION audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- Only the purge sets identity.audit_purge (audit/retention.py), for one org, in its own
        -- transaction, after moving the chain's base: events up to that base may go, no others.
        IF TG_OP = 'DELETE'
           AND coalesce(current_setting('identity.audit_purge', true), '') = OLD.org_id
           AND OLD.seq <= (SELECT h.base_seq FROM audit_heads h WHERE h.org_id = OLD.org_id) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP;
    END $$"""

OLD_GUARD = """
    CREATE OR REPLACE FUNCTION audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND EXISTS (SELECT 1 FROM audit_purge_permits p WHERE p.org_id = OLD.org_id) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP;
    END $$"""

NO_TRUNCATE = """
    CREATE FUNCTION audit_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only (TRUNCATE refused)', TG_TABLE_NAME;
    END $$"""

SQLITE_DELETE = ("CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
                 "WHEN NOT EXISTS (SELECT 1 FROM audit_purge_permits p WHERE p.org_id = OLD.org_id) "
                 "{also}BEGIN SELECT RAISE(ABORT, 'audit events are append-only (DELETE refused)'); END")
AFTER_BASE = "OR OLD.seq > (SELECT h.base_seq FROM audit_heads h WHERE h.org_id = OLD.org_id) "
# Made again if missing: a batch ALTER of audit_events on SQLite (a table copy) drops its triggers.
SQLITE_UPDATE = ("CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events "
                 "BEGIN SELECT RAISE(ABORT, 'audit events are append-only (UPDATE refused)'); END")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(GUARD)
        op.execute(NO_TRUNCATE)
        for table in ("audit_events", "audit_checkpoints"):
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        op.execute(SQLITE_DELETE.format(also=AFTER_BASE))
        op.execute(SQLITE_UPDATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("audit_events", "audit_checkpoints"):
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION audit_no_truncate()")
        op.execute(OLD_GUARD)
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        op.execute(SQLITE_DELETE.format(also=""))
        op.execute(SQLITE_UPDATE)
