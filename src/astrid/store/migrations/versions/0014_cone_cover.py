"""The detections' HEALPix index covers the cone search's columns on PostgreSQL.

``ix_detections_healpix`` becomes ``(healpix) INCLUDE (id, ra, dec)``: a cone's candidate
rows (id, ra, dec within the HEALPix ranges) are read by index-only scans instead of one
heap page per candidate (on a 1M-row table ~145 random heap pages per 0.5-degree cone, the
PostgreSQL CPU of the cone search). Same key, so every query that used the index still
does. SQLite keeps its plain index (no INCLUDE).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 00:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild(include: list[str] | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_detections_healpix", table_name="detections")
    op.create_index(
        "ix_detections_healpix",
        "detections",
        ["healpix"],
        unique=False,
        postgresql_include=include or [],
    )


def upgrade() -> None:
    _rebuild(["id", "ra", "dec"])


def downgrade() -> None:
    _rebuild(None)
