"""Calibration frames' validity and products, reference versions, per-difference limits.

* ``calibration_frames``: ``valid_from``/``valid_to`` (MJD), ``variance_key``, ``mask_key``,
  ``filename``;
* ``preprocess_results.provenance`` (calibration frames applied);
* ``reference_images.version`` (1, 2, ... per field and filter) and ``mask_key``;
* ``differences.reference_version`` (the version of the reference a difference used);
* ``detection_limits``: completeness curve and 50 % / 90 % limiting magnitudes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("calibration_frames", schema=None) as batch_op:
        batch_op.add_column(sa.Column("valid_from", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("valid_to", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("variance_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("mask_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("filename", sa.String(length=512), nullable=True))
    with op.batch_alter_table("preprocess_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provenance", JSON, nullable=True))
    op.execute(sa.text("UPDATE preprocess_results SET provenance = '{}'"))
    with op.batch_alter_table("preprocess_results", schema=None) as batch_op:
        batch_op.alter_column("provenance", existing_type=JSON, nullable=False)
    with op.batch_alter_table("reference_images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("mask_key", sa.String(length=128), nullable=True))
    op.execute(sa.text("UPDATE reference_images SET version = 1"))
    with op.batch_alter_table("reference_images", schema=None) as batch_op:
        batch_op.alter_column("version", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("differences", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reference_version", sa.Integer(), nullable=True))
    op.create_table(
        "detection_limits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("difference_id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=False),
        sa.Column("n_injected", sa.Integer(), nullable=False),
        sa.Column("n_recovered", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("zero_point", sa.Float(), nullable=True),
        sa.Column("m50", sa.Float(), nullable=True),
        sa.Column("m90", sa.Float(), nullable=True),
        sa.Column("curve", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["difference_id"],
            ["differences.id"],
            name=op.f("fk_detection_limits_difference_id_differences"),
        ),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_detection_limits_observation_id_observations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection_limits")),
        sa.UniqueConstraint("difference_id", name=op.f("uq_detection_limits_difference_id")),
    )
    with op.batch_alter_table("detection_limits", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_detection_limits_observation_id"), ["observation_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("detection_limits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detection_limits_observation_id"))
    op.drop_table("detection_limits")
    with op.batch_alter_table("differences", schema=None) as batch_op:
        batch_op.drop_column("reference_version")
    with op.batch_alter_table("reference_images", schema=None) as batch_op:
        batch_op.drop_column("mask_key")
        batch_op.drop_column("version")
    with op.batch_alter_table("preprocess_results", schema=None) as batch_op:
        batch_op.drop_column("provenance")
    with op.batch_alter_table("calibration_frames", schema=None) as batch_op:
        batch_op.drop_column("filename")
        batch_op.drop_column("mask_key")
        batch_op.drop_column("variance_key")
        batch_op.drop_column("valid_to")
        batch_op.drop_column("valid_from")
