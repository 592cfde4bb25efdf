"""Model operations: ``shadow_scores`` (per-version scores) and ``drift_checks`` (per night).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "shadow_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["detection_id"],
            ["detections.id"],
            name=op.f("fk_shadow_scores_detection_id_detections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_scores")),
        sa.UniqueConstraint(
            "detection_id",
            "model_name",
            "model_version",
            name=op.f("uq_shadow_scores_detection_id"),
        ),
    )
    with op.batch_alter_table("shadow_scores", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_shadow_scores_detection_id"), ["detection_id"], unique=False
        )
        batch_op.create_index(
            "ix_shadow_scores_model", ["model_name", "model_version"], unique=False
        )
    op.create_table(
        "drift_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("night", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("psi", JSON, nullable=False),
        sa.Column("max_psi", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_checks")),
    )
    with op.batch_alter_table("drift_checks", schema=None) as batch_op:
        batch_op.create_index("ix_drift_checks_model_night", ["model_name", "night"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("drift_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_drift_checks_model_night")
    op.drop_table("drift_checks")
    with op.batch_alter_table("shadow_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_shadow_scores_model")
        batch_op.drop_index(batch_op.f("ix_shadow_scores_detection_id"))
    op.drop_table("shadow_scores")
