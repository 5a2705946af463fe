"""Accounts, users, bot users, API keys and tunnel credentials.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(40)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_users_account_email", "users", ["account_id", "email"], unique=True)
    op.create_table(
        "bot_users",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_bot_users_account_id", "bot_users", ["account_id", "id"])
    for table in ("api_keys", "credentials"):
        columns: list[sa.Column[Any]] = [
            sa.Column("id", ID, primary_key=True),
            sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), nullable=False),
            sa.Column("owner_id", ID, nullable=False),
            sa.Column("description", sa.Text(), nullable=False),
            sa.Column("metadata", sa.Text(), nullable=False),
        ]
        if table == "credentials":
            columns.append(sa.Column("acl", sa.Text(), nullable=False))
        columns += [
            sa.Column("token_digest", sa.String(64), nullable=False),
            sa.Column("created_at", sa.DateTime(), nullable=False),
        ]
        op.create_table(table, *columns)
        op.create_index(f"ix_{table}_account_id", table, ["account_id", "id"])
        op.create_index(f"ix_{table}_owner_id", table, ["owner_id"])


def downgrade() -> None:
    for table in ("credentials", "api_keys", "bot_users", "users", "accounts"):
        op.drop_table(table)
