"""ACME: reserved domains' certificate_management_policy and status; one row per managed
name (its certificate, sealed key, order lock and backoff); pending challenges, so that any
node answers them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reserved_domains") as table:
        table.add_column(sa.Column("certificate_management_policy", sa.JSON(), nullable=True))
        table.add_column(sa.Column("certificate_management_status", sa.JSON(), nullable=True))
        table.add_column(sa.Column("managed_certificate_id", sa.String(40), nullable=True))
    op.create_table(
        "acme_certificates",
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("key_type", sa.String(8), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=True),
        sa.Column("private_key_sealed", sa.Text(), nullable=True),
        sa.Column("not_after", sa.DateTime(), nullable=True),
        sa.Column("renews_at", sa.DateTime(), nullable=True),
        sa.Column("issued_at", sa.DateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("job_started_at", sa.DateTime(), nullable=True),
        sa.Column("job_error_code", sa.String(64), nullable=True),
        sa.Column("job_msg", sa.Text(), nullable=True),
        sa.Column("job_retries_at", sa.DateTime(), nullable=True),
        sa.Column("locked_by", sa.String(40), nullable=True),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "acme_challenges",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("token", sa.String(255), primary_key=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("acme_challenges")
    op.drop_table("acme_certificates")
    with op.batch_alter_table("reserved_domains") as table:
        table.drop_column("managed_certificate_id")
        table.drop_column("certificate_management_status")
        table.drop_column("certificate_management_policy")
