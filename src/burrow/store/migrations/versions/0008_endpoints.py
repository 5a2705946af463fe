"""What /endpoints shows of a live tunnel: its endpoint id, name, description, Traffic
Policy document and when an agent last patched it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = ("endpoint_id", "name", "description", "traffic_policy")


def upgrade() -> None:
    with op.batch_alter_table("cluster_tunnels") as table:
        table.add_column(sa.Column("endpoint_id", sa.String(40), nullable=False, server_default=""))
        table.add_column(sa.Column("name", sa.Text(), nullable=False, server_default=""))
        table.add_column(sa.Column("description", sa.Text(), nullable=False, server_default=""))
        table.add_column(sa.Column("traffic_policy", sa.Text(), nullable=False, server_default=""))
        table.add_column(sa.Column("updated_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cluster_tunnels") as table:
        for name in (*_COLUMNS, "updated_at"):
            table.drop_column(name)
