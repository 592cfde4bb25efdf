"""Object merges (retired ids kept as aliases) and the cross-match time of an object.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 17:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "object_merges",
        sa.Column("merged_id", sa.Integer(), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=True),
        sa.Column("n_detections", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["detection_id"],
            ["detections.id"],
            name=op.f("fk_object_merges_detection_id_detections"),
        ),
        sa.ForeignKeyConstraint(
            ["object_id"], ["sky_objects.id"], name=op.f("fk_object_merges_object_id_sky_objects")
        ),
        sa.PrimaryKeyConstraint("merged_id", name=op.f("pk_object_merges")),
    )
    with op.batch_alter_table("object_merges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_object_merges_object_id"), ["object_id"], unique=False)
    with op.batch_alter_table("sky_objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("crossmatched_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sky_objects", schema=None) as batch_op:
        batch_op.drop_column("crossmatched_at")
    with op.batch_alter_table("object_merges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_object_merges_object_id"))
    op.drop_table("object_merges")
