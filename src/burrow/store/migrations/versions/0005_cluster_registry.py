"""The cluster registry: nodes, their live sessions, tunnels, bound names and commands.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(40)


def upgrade() -> None:
    op.create_table(
        "cluster_nodes",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("relay_addr", sa.String(300), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "cluster_sessions",
        sa.Column("id", ID, primary_key=True),
        sa.Column("node_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("credential_id", ID, nullable=False),
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("agent_version", sa.String(255), nullable=False),
        sa.Column("os", sa.String(255), nullable=False),
        sa.Column("user_agent", sa.String(1024), nullable=False),
        sa.Column("client_addr", sa.String(300), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_cluster_sessions_account_id", "cluster_sessions", ["account_id", "id"])
    op.create_index("ix_cluster_sessions_node_id", "cluster_sessions", ["node_id"])
    op.create_table(
        "cluster_tunnels",
        sa.Column("session_id", ID, primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("node_id", ID, nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("proto", sa.String(16), nullable=False),
        sa.Column("url", sa.String(300), nullable=False),
        sa.Column("forwards_to", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_cluster_tunnels_account_id", "cluster_tunnels", ["account_id"])
    op.create_index("ix_cluster_tunnels_node_id", "cluster_tunnels", ["node_id"])
    op.create_table(
        "cluster_bindings",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("node_id", ID, nullable=False),
    )
    op.create_index("ix_cluster_bindings_session_id", "cluster_bindings", ["session_id"])
    op.create_index("ix_cluster_bindings_node_id", "cluster_bindings", ["node_id"])
    op.create_table(
        "cluster_commands",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("node_id", ID, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_cluster_commands_node_id", "cluster_commands", ["node_id"])


def downgrade() -> None:
    for table in (
        "cluster_commands",
        "cluster_bindings",
        "cluster_tunnels",
        "cluster_sessions",
        "cluster_nodes",
    ):
        op.drop_table(table)
