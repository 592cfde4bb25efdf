"""Notifications (rules, deliveries, delivery log) and the catalog (entries, releases).

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-30 14:56:14.430503
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "catalog_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ra", sa.Float(), nullable=False),
        sa.Column("dec", sa.Float(), nullable=False),
        sa.Column("healpix", sa.BigInteger(), nullable=False),
        sa.Column("classification", sa.String(length=256), nullable=True),
        sa.Column("n_detections", sa.Integer(), nullable=False),
        sa.Column("first_mjd", sa.Float(), nullable=True),
        sa.Column("last_mjd", sa.Float(), nullable=True),
        sa.Column("peak_mag", sa.Float(), nullable=True),
        sa.Column("latest_mag", sa.Float(), nullable=True),
        sa.Column("max_score", sa.Float(), nullable=True),
        sa.Column("importance", sa.Integer(), nullable=True),
        sa.Column("discovery_status", sa.String(length=32), nullable=True),
        sa.Column(
            "annotations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"], ["sky_objects.id"], name=op.f("fk_catalog_entries_object_id_sky_objects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_entries")),
        sa.UniqueConstraint("name", name=op.f("uq_catalog_entries_name")),
        sa.UniqueConstraint("object_id", name=op.f("uq_catalog_entries_object_id")),
    )
    with op.batch_alter_table("catalog_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_entries_classification"), ["classification"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_catalog_entries_first_mjd"), ["first_mjd"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_catalog_entries_healpix"), ["healpix"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_catalog_entries_importance"), ["importance"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_catalog_entries_last_mjd"), ["last_mjd"], unique=False)
        batch_op.create_index(batch_op.f("ix_catalog_entries_peak_mag"), ["peak_mag"], unique=False)

    op.create_table(
        "catalog_releases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=128), nullable=False),
        sa.Column("n_entries", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_catalog_releases_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_releases")),
        sa.UniqueConstraint("version", name=op.f("uq_catalog_releases_version")),
    )
    op.create_table(
        "notification_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=1024), nullable=False),
        sa.Column(
            "events",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("min_score", sa.Float(), nullable=True),
        sa.Column("min_snr", sa.Float(), nullable=True),
        sa.Column("classification", sa.String(length=256), nullable=True),
        sa.Column(
            "region",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("digest", sa.Boolean(), nullable=False),
        sa.Column("quiet_start_hour", sa.Integer(), nullable=True),
        sa.Column("quiet_end_hour", sa.Integer(), nullable=True),
        sa.Column("max_per_hour", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notification_rules_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_rules")),
    )
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_rules_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column(
            "context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["notification_rules.id"],
            name=op.f("fk_notification_deliveries_rule_id_notification_rules"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint("rule_id", "event_id", name=op.f("uq_notification_deliveries_rule_id")),
    )
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_deliveries_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notification_deliveries_rule_id"), ["rule_id"], unique=False
        )

    op.create_table(
        "notification_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["notification_deliveries.id"],
            name=op.f("fk_notification_attempts_delivery_id_notification_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_attempts")),
    )
    with op.batch_alter_table("notification_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_attempts_delivery_id"), ["delivery_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("notification_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_attempts_delivery_id"))

    op.drop_table("notification_attempts")
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_deliveries_rule_id"))
        batch_op.drop_index("ix_notification_deliveries_due")

    op.drop_table("notification_deliveries")
    with op.batch_alter_table("notification_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_rules_user_id"))

    op.drop_table("notification_rules")
    op.drop_table("catalog_releases")
    with op.batch_alter_table("catalog_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_entries_peak_mag"))
        batch_op.drop_index(batch_op.f("ix_catalog_entries_last_mjd"))
        batch_op.drop_index(batch_op.f("ix_catalog_entries_importance"))
        batch_op.drop_index(batch_op.f("ix_catalog_entries_healpix"))
        batch_op.drop_index(batch_op.f("ix_catalog_entries_first_mjd"))
        batch_op.drop_index(batch_op.f("ix_catalog_entries_classification"))

    op.drop_table("catalog_entries")
