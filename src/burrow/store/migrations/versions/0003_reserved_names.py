"""Reserved domains and reserved TCP addresses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(40)


def upgrade() -> None:
    for table, name_column in (
        ("reserved_domains", sa.Column("domain", sa.String(253), nullable=False)),
        ("reserved_addrs", sa.Column("addr", sa.String(300), nullable=False)),
    ):
        extra = (
            [sa.Column("cname_target", sa.String(253), nullable=True)] if table == "reserved_domains" else []
        )
        op.create_table(
            table,
            sa.Column("id", ID, primary_key=True),
            sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
            sa.Column("owner_id", ID, nullable=False),
            sa.Column("description", sa.Text(), nullable=False),
            sa.Column("metadata", sa.Text(), nullable=False),
            name_column,
            *extra,
            sa.Column("created_at", sa.DateTime(), nullable=False),
        )
        op.create_index(f"ix_{table}_{name_column.name}", table, [name_column.name], unique=True)
        op.create_index(f"ix_{table}_account_id", table, ["account_id", "id"])


def downgrade() -> None:
    op.drop_table("reserved_addrs")
    op.drop_table("reserved_domains")
