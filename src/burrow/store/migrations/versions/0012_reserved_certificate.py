"""A reserved domain's certificate_id: the uploaded /tls_certificates row served for it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reserved_domains") as table:
        table.add_column(sa.Column("certificate_id", sa.String(40), nullable=True))
    op.create_index("ix_reserved_domains_certificate_id", "reserved_domains", ["certificate_id"])


def downgrade() -> None:
    op.drop_index("ix_reserved_domains_certificate_id", "reserved_domains")
    with op.batch_alter_table("reserved_domains") as table:
        table.drop_column("certificate_id")
