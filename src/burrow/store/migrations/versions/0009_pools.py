"""Endpoint pools: a name bound by several sessions of one account (PoolingEnabled).

The binding row stays the name's one holder (its primary key keeps other accounts out);
``pooled`` marks it shared, and cluster_pool_members lists every session in the pool, so
that when the holder leaves the name passes to another member instead of coming free.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cluster_bindings") as table:
        table.add_column(sa.Column("pooled", sa.Boolean(), nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("account_id", sa.String(40), nullable=False, server_default=""))
    with op.batch_alter_table("cluster_tunnels") as table:
        table.add_column(sa.Column("pooled", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "cluster_pool_members",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("session_id", sa.String(40), primary_key=True),
        sa.Column("node_id", sa.String(40), nullable=False),
    )
    op.create_index("ix_cluster_pool_members_session_id", "cluster_pool_members", ["session_id"])
    op.create_index("ix_cluster_pool_members_node_id", "cluster_pool_members", ["node_id"])


def downgrade() -> None:
    op.drop_table("cluster_pool_members")
    with op.batch_alter_table("cluster_tunnels") as table:
        table.drop_column("pooled")
    with op.batch_alter_table("cluster_bindings") as table:
        table.drop_column("account_id")
        table.drop_column("pooled")
