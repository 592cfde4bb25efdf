"""A master calibration frame may belong to one chip of a multi-chip camera.

``calibration_frames.chip``: the science image's name in the file it was registered from
(``SCI,2`` for an HST-style chip, ``N4`` for a mosaic CCD), or NULL for a master of the
whole instrument (every existing row: they apply as before). The preprocess stage applies a
chip's master only to observations of that chip (``observations.extra['hdu_name']``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calibration_frames") as batch:
        batch.add_column(sa.Column("chip", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calibration_frames") as batch:
        batch.drop_column("chip")
