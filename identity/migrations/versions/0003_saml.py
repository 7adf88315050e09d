"""saml: per-org SP/IdP connections, pending AuthnRequests, assertion replay cache, sessions, sign-in links

Revision ID: 0003
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

import audit.models

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saml_connections",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("idp_entity_id", sa.String(length=1024), nullable=False),
        sa.Column("idp_sso_url", sa.String(length=2048), nullable=False),
        sa.Column("idp_slo_url", sa.String(length=2048), nullable=True),
        sa.Column("idp_signing_certs", sa.JSON(), nullable=False),
        sa.Column("idp_metadata_url", sa.String(length=2048), nullable=True),
        sa.Column("metadata_refreshed_at", audit.models.UTCDateTime(), nullable=True),
        sa.Column("sp_cert_pem", sa.Text(), nullable=False),
        sa.Column("sp_key_pem", sa.Text(), nullable=False),
        sa.Column("jit", sa.Boolean(), nullable=False),
        sa.Column("allow_idp_initiated", sa.Boolean(), nullable=False),
        sa.Column("sign_authn_requests", sa.Boolean(), nullable=False),
        sa.Column("want_assertions_encrypted", sa.Boolean(), nullable=False),
        sa.Column("attribute_map", sa.JSON(), nullable=False),
        sa.Column("created_at", audit.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", audit.models.UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_saml_connections_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_saml_connections")),
    )
    op.create_table(
        "saml_pending_requests",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("relay_state", sa.String(length=2048), nullable=True),
        sa.Column("created_at", audit.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", audit.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saml_pending_requests")),
    )
    op.create_index("ix_saml_pending_requests_expires", "saml_pending_requests", ["expires_at"])
    op.create_table(
        "saml_seen_assertions",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("assertion_id", sa.String(length=256), nullable=False),
        sa.Column("expires_at", audit.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "assertion_id", name=op.f("pk_saml_seen_assertions")),
    )
    op.create_index("ix_saml_seen_assertions_expires", "saml_seen_assertions", ["expires_at"])
    op.create_table(
        "sso_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("name_id", sa.String(length=512), nullable=True),
        sa.Column("name_id_format", sa.String(length=256), nullable=True),
        sa.Column("session_index", sa.String(length=256), nullable=True),
        sa.Column("created_at", audit.models.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", audit.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", audit.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_sessions")),
    )
    op.create_index("ix_sso_sessions_user", "sso_sessions", ["user_id"])
    op.create_index("ix_sso_sessions_org_name_id", "sso_sessions", ["org_id", "name_id"])
    op.create_index("ix_sso_sessions_expires", "sso_sessions", ["expires_at"])
    op.create_table(
        "sign_in_links",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", audit.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", audit.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_links")),
    )
    op.create_index("ix_sign_in_links_expires", "sign_in_links", ["expires_at"])


def downgrade() -> None:
    op.drop_table("sign_in_links")
    op.drop_table("sso_sessions")
    op.drop_table("saml_seen_assertions")
    op.drop_table("saml_pending_requests")
    op.drop_table("saml_connections")
