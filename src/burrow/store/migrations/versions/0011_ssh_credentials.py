"""SSH credentials: public keys that start tunnels through the SSH gateway (docs/ssh.md).

A key is registered once across accounts (the unique fingerprint), so that an SSH client's
key names one credential.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.String(40)


def upgrade() -> None:
    op.create_table(
        "ssh_credentials",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("acl", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_ssh_credentials_fingerprint", "ssh_credentials", ["fingerprint"], unique=True)
    op.create_index("ix_ssh_credentials_account_id", "ssh_credentials", ["account_id", "id"])
    op.create_index("ix_ssh_credentials_owner_id", "ssh_credentials", ["owner_id"])


def downgrade() -> None:
    op.drop_table("ssh_credentials")
