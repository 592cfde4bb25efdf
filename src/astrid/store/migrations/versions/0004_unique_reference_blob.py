"""One reference row per reference image: unique ``reference_images.blob_key``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 11:25:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reference_images") as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_reference_images_blob_key"), ["blob_key"])


def downgrade() -> None:
    with op.batch_alter_table("reference_images") as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_reference_images_blob_key"), type_="unique")
