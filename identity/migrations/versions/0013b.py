"""One normalized key for userName, email and NameID; SAML identities linked by persistent NameID.

- `users.user_name_key`: identity.names.name_key(user_name) (NFC, then case folding), computed in
  Python for every existing row; the per-org unique index on live userNames, and the index on
  removed ones, move from `lower(user_name)` to it.
- `user_emails.value` becomes each address's key instead of its lowercase: the rows are rebuilt
  from the users, by the rule of identity.emails.
- `saml_identities`: (org, IdP entity id, NameID key) -> user, at most one per user and IdP.

Two live users of one org whose userNames differ under `lower()` but share a key (`straße` and
`STRASSE`) cannot both keep their name: the upgrade stops before changing the index and names
them, for an operator to rename one.

Revision ID: 0013b
Revises: 0012
"""
import json
import unicodedata
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

import audit.models

revision = "0013b"
down_revision = "0012"
branch_labels = None
depends_on = None

BATCH = 5000
LIVE, REMOVED = sa.text("deleted_at IS NULL"), sa.text("deleted_at IS NOT NULL")
USERS = sa.table("users", sa.column("id"), sa.column("org_id"), sa.column("user_name"),
                 sa.column("user_name_key"), sa.column("email"), sa.column("deleted_at"),
                 sa.column("attributes", sa.JSON()))
EMAILS = sa.table("user_emails", sa.column("org_id"), sa.column("user_id"), sa.column("value"), sa.column("type"),
                  sa.column("primary"), sa.column("display"))


def name_key(value: str) -> str:
    # identity.names.name_key as it stands at this revision (a migration does not follow later code).
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).casefold())


def upgrade() -> None:
    # NOT NULL from the start: SQLite adds such a column only with a default, which PostgreSQL then drops.
    op.add_column("users", sa.Column("user_name_key", sa.String(1024), nullable=False, server_default=""))
    _backfill_user_name_keys()
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("users", "user_name_key", existing_type=sa.String(1024), server_default=None)
    _refuse_clashes()
    op.drop_index("uq_users_org_user_name", table_name="users")
    op.drop_index("ix_users_org_removed_user_name", table_name="users")
    op.create_index("uq_users_org_user_name", "users", ["org_id", "user_name_key"], unique=True,
                    sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_index("ix_users_org_removed_user_name", "users", ["org_id", "user_name_key"],
                    sqlite_where=REMOVED, postgresql_where=REMOVED)
    _rebuild_email_rows(name_key)
    op.create_table(
        "saml_identities",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("idp_entity_id", sa.String(length=1024), nullable=False),
        sa.Column("name_id_key", sa.String(length=1024), nullable=False),
        sa.Column("name_id", sa.String(length=1024), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", audit.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_saml_identities_org_id_orgs")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_saml_identities_user_id_users")),
        sa.PrimaryKeyConstraint("org_id", "idp_entity_id", "name_id_key", name=op.f("pk_saml_identities")),
    )
    op.create_index("uq_saml_identities_user", "saml_identities", ["user_id", "idp_entity_id"], unique=True)


def _batches(select: sa.Select[Any]) -> Any:
    """Yield the users `select` reads (it must read `id`), BATCH at a time, in id order."""
    bind, last = op.get_bind(), ""
    while True:
        batch = bind.execute(select.where(USERS.c.id > last).order_by(USERS.c.id).limit(BATCH)).all()
        if not batch:
            return
        yield batch
        last = batch[-1].id


def _backfill_user_name_keys() -> None:
    update = USERS.update().where(USERS.c.id == sa.bindparam("uid")).values(user_name_key=sa.bindparam("key"))
    for batch in _batches(sa.select(USERS.c.id, USERS.c.user_name)):
        op.get_bind().execute(update, [{"uid": row.id, "key": name_key(row.user_name)} for row in batch])


def _refuse_clashes() -> None:
    clashes = op.get_bind().execute(
        sa.select(USERS.c.org_id, USERS.c.user_name_key, sa.func.count()).where(USERS.c.deleted_at.is_(None))
        .group_by(USERS.c.org_id, USERS.c.user_name_key).having(sa.func.count() > 1).limit(20)).all()
    if clashes:
        named = "; ".join(f"org {row.org_id}: {row[2]} live users whose userName is {row.user_name_key!r} once "
                          f"case-folded" for row in clashes)
        raise RuntimeError(f"userNames that are one name under Unicode case folding must be made distinct "
                           f"before this upgrade (rename or delete one of each): {named}")


def _email_rows(key: Callable[[str], str], org_id: str, user_id: str, attributes: Any,
                email: str | None) -> list[dict[str, Any]]:
    # The rule of identity.emails as it stands at this revision, with `key` for the stored value.
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    sent = (attributes or {}).get("emails")
    items: list[Any] = list(sent) if sent else ([{"value": email, "type": "work", "primary": True}] if email else [])
    rows = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str) or not item["value"]:
            continue
        kind, display = item.get("type"), item.get("display")
        rows.append({"org_id": org_id, "user_id": user_id, "value": key(item["value"])[:320],
                     "type": kind[:64] if isinstance(kind, str) else None,
                     "primary": item.get("primary") is True or str(item.get("primary")).lower() == "true",
                     "display": display[:320] if isinstance(display, str) else None})
    return rows


def _rebuild_email_rows(key: Callable[[str], str]) -> None:
    """Write every user's `user_emails` rows again, their values made by `key`."""
    bind = op.get_bind()
    bind.execute(EMAILS.delete())
    for batch in _batches(sa.select(USERS.c.id, USERS.c.org_id, USERS.c.email, USERS.c.attributes)):
        rows = [row for user in batch for row in _email_rows(key, user.org_id, user.id, user.attributes, user.email)]
        if rows:
            bind.execute(EMAILS.insert(), rows)


def downgrade() -> None:
    op.drop_index("uq_saml_identities_user", table_name="saml_identities")
    op.drop_table("saml_identities")
    _rebuild_email_rows(str.lower)
    op.drop_index("uq_users_org_user_name", table_name="users")
    op.drop_index("ix_users_org_removed_user_name", table_name="users")
    op.create_index("uq_users_org_user_name", "users", ["org_id", sa.text("lower(user_name)")], unique=True,
                    sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_index("ix_users_org_removed_user_name", "users", ["org_id", sa.text("lower(user_name)")],
                    sqlite_where=REMOVED, postgresql_where=REMOVED)
    op.drop_column("users", "user_name_key")
