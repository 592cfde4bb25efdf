"""Revoked refresh-token families: reuse of a rotated refresh token revokes its whole family.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 15:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_token_families",
        sa.Column("family", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("family", name=op.f("pk_revoked_token_families")),
    )


def downgrade() -> None:
    op.drop_table("revoked_token_families")
