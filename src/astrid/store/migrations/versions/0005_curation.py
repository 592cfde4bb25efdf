"""Curation: sky objects, votes and consensus state, audit, taxonomy, comments, review,
discoveries, annotations; existing detections enter the scanning queue.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 14:56:13.462306
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "curation_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=True),
        sa.Column("object_id", sa.Integer(), nullable=True),
        sa.Column("vote_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=128), nullable=True),
        sa.Column(
            "before",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "after",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_curation_audit")),
    )
    with op.batch_alter_table("curation_audit", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_curation_audit_detection_id"), ["detection_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_curation_audit_object_id"), ["object_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_curation_audit_user_id"), ["user_id"], unique=False)

    op.create_table(
        "curation_config",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column(
            "value",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_by", sa.String(length=128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_curation_config")),
    )
    op.create_table(
        "sky_objects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ra", sa.Float(), nullable=False),
        sa.Column("dec", sa.Float(), nullable=False),
        sa.Column("healpix", sa.BigInteger(), nullable=False),
        sa.Column("sx", sa.Float(), nullable=False),
        sa.Column("sy", sa.Float(), nullable=False),
        sa.Column("sz", sa.Float(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("first_mjd", sa.Float(), nullable=True),
        sa.Column("last_mjd", sa.Float(), nullable=True),
        sa.Column("peak_mag", sa.Float(), nullable=True),
        sa.Column("latest_mag", sa.Float(), nullable=True),
        sa.Column("max_confidence", sa.Float(), nullable=True),
        sa.Column("n_detections", sa.Integer(), nullable=False),
        sa.Column("ztf_object_id", sa.String(length=32), nullable=True),
        sa.Column(
            "aliases",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("label", sa.String(length=16), nullable=True),
        sa.Column("classification", sa.String(length=256), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sky_objects")),
    )
    with op.batch_alter_table("sky_objects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sky_objects_healpix"), ["healpix"], unique=False)
        batch_op.create_index("ix_sky_objects_last_mjd", ["last_mjd"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sky_objects_max_confidence"), ["max_confidence"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_sky_objects_ztf_object_id"), ["ztf_object_id"], unique=False
        )

    op.create_table(
        "taxonomy_versions",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "tree",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "paths",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_taxonomy_versions")),
    )
    op.create_table(
        "discoveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("classification", sa.String(length=256), nullable=True),
        sa.Column("importance", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_discoveries_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["object_id"], ["sky_objects.id"], name=op.f("fk_discoveries_object_id_sky_objects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discoveries")),
        sa.UniqueConstraint("object_id", name=op.f("uq_discoveries_object_id")),
    )
    with op.batch_alter_table("discoveries", schema=None) as batch_op:
        batch_op.create_index("ix_discoveries_status", ["status", "id"], unique=False)

    op.create_table(
        "comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=True),
        sa.Column("object_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "mentions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["detection_id"], ["detections.id"], name=op.f("fk_comments_detection_id_detections")
        ),
        sa.ForeignKeyConstraint(
            ["object_id"], ["sky_objects.id"], name=op.f("fk_comments_object_id_sky_objects")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_comments_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comments")),
    )
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.create_index("ix_comments_detection", ["detection_id", "id"], unique=False)
        batch_op.create_index("ix_comments_object", ["object_id", "id"], unique=False)

    op.create_table(
        "curation_states",
        sa.Column("detection_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=True),
        sa.Column("classification", sa.String(length=256), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("n_real", sa.Integer(), nullable=False),
        sa.Column("n_bogus", sa.Integer(), nullable=False),
        sa.Column("n_skip", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=256), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["detection_id"],
            ["detections.id"],
            name=op.f("fk_curation_states_detection_id_detections"),
        ),
        sa.PrimaryKeyConstraint("detection_id", name=op.f("pk_curation_states")),
    )
    with op.batch_alter_table("curation_states", schema=None) as batch_op:
        batch_op.create_index(
            "ix_curation_states_state_detection", ["state", "detection_id"], unique=False
        )
        batch_op.create_index(
            "ix_curation_states_state_margin", ["state", "margin", "detection_id"], unique=False
        )
        batch_op.create_index(
            "ix_curation_states_state_score", ["state", "score", "detection_id"], unique=False
        )

    op.create_table(
        "detection_annotations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=True),
        sa.Column("object_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("separation_arcsec", sa.Float(), nullable=True),
        sa.Column("mag", sa.Float(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["detection_id"],
            ["detections.id"],
            name=op.f("fk_detection_annotations_detection_id_detections"),
        ),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["sky_objects.id"],
            name=op.f("fk_detection_annotations_object_id_sky_objects"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection_annotations")),
    )
    with op.batch_alter_table("detection_annotations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_detection_annotations_detection_kind", ["detection_id", "kind"], unique=False
        )
        batch_op.create_index("ix_detection_annotations_object", ["object_id"], unique=False)

    op.create_table(
        "expert_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=True),
        sa.Column("object_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=True),
        sa.Column("classification", sa.String(length=256), nullable=True),
        sa.Column("importance", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["detection_id"],
            ["detections.id"],
            name=op.f("fk_expert_reviews_detection_id_detections"),
        ),
        sa.ForeignKeyConstraint(
            ["object_id"], ["sky_objects.id"], name=op.f("fk_expert_reviews_object_id_sky_objects")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_expert_reviews_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expert_reviews")),
    )
    with op.batch_alter_table("expert_reviews", schema=None) as batch_op:
        batch_op.create_index("ix_expert_reviews_detection", ["detection_id"], unique=False)
        batch_op.create_index("ix_expert_reviews_object", ["object_id"], unique=False)

    op.create_table(
        "object_members",
        sa.Column("detection_id", sa.Integer(), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("separation_arcsec", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["detection_id"],
            ["detections.id"],
            name=op.f("fk_object_members_detection_id_detections"),
        ),
        sa.ForeignKeyConstraint(
            ["object_id"], ["sky_objects.id"], name=op.f("fk_object_members_object_id_sky_objects")
        ),
        sa.PrimaryKeyConstraint("detection_id", name=op.f("pk_object_members")),
    )
    with op.batch_alter_table("object_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_object_members_object_id"), ["object_id"], unique=False
        )

    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("detection_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=8), nullable=False),
        sa.Column("classification", sa.String(length=256), nullable=True),
        sa.Column("taxonomy_version", sa.Integer(), nullable=True),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["detection_id"], ["detections.id"], name=op.f("fk_votes_detection_id_detections")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_votes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_votes")),
    )
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.create_index("ix_votes_detection_state", ["detection_id", "state"], unique=False)
        batch_op.create_index("ix_votes_user_created", ["user_id", "created_at"], unique=False)
        batch_op.create_index(
            "uq_votes_active_user",
            ["detection_id", "user_id"],
            unique=True,
            sqlite_where=sa.text("state = 'active'"),
            postgresql_where=sa.text("state = 'active'"),
        )

    # Every stored detection gets its curation state: labelled ones as decided, others queued.
    op.execute(
        "INSERT INTO curation_states (detection_id, state, label, score, margin, n_real, "
        "n_bogus, n_skip, version, updated_at) "
        "SELECT id, CASE label WHEN 'real' THEN 'consensus_real' "
        "WHEN 'bogus' THEN 'consensus_bogus' ELSE 'awaiting' END, "
        "CASE WHEN label IN ('real', 'bogus') THEN label END, "
        "COALESCE(confidence, -1.0), "
        "CASE WHEN confidence IS NULL THEN 0.5 ELSE ABS(confidence - 0.5) END, "
        "0, 0, 0, 0, CURRENT_TIMESTAMP FROM detections"
    )


def downgrade() -> None:
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_votes_active_user",
            sqlite_where=sa.text("state = 'active'"),
            postgresql_where=sa.text("state = 'active'"),
        )
        batch_op.drop_index("ix_votes_user_created")
        batch_op.drop_index("ix_votes_detection_state")

    op.drop_table("votes")
    with op.batch_alter_table("object_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_object_members_object_id"))

    op.drop_table("object_members")
    with op.batch_alter_table("expert_reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_expert_reviews_object")
        batch_op.drop_index("ix_expert_reviews_detection")

    op.drop_table("expert_reviews")
    with op.batch_alter_table("detection_annotations", schema=None) as batch_op:
        batch_op.drop_index("ix_detection_annotations_object")
        batch_op.drop_index("ix_detection_annotations_detection_kind")

    op.drop_table("detection_annotations")
    with op.batch_alter_table("curation_states", schema=None) as batch_op:
        batch_op.drop_index("ix_curation_states_state_score")
        batch_op.drop_index("ix_curation_states_state_margin")
        batch_op.drop_index("ix_curation_states_state_detection")

    op.drop_table("curation_states")
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.drop_index("ix_comments_object")
        batch_op.drop_index("ix_comments_detection")

    op.drop_table("comments")
    with op.batch_alter_table("discoveries", schema=None) as batch_op:
        batch_op.drop_index("ix_discoveries_status")

    op.drop_table("discoveries")
    op.drop_table("taxonomy_versions")
    with op.batch_alter_table("sky_objects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sky_objects_ztf_object_id"))
        batch_op.drop_index(batch_op.f("ix_sky_objects_max_confidence"))
        batch_op.drop_index("ix_sky_objects_last_mjd")
        batch_op.drop_index(batch_op.f("ix_sky_objects_healpix"))

    op.drop_table("sky_objects")
    op.drop_table("curation_config")
    with op.batch_alter_table("curation_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_curation_audit_user_id"))
        batch_op.drop_index(batch_op.f("ix_curation_audit_object_id"))
        batch_op.drop_index(batch_op.f("ix_curation_audit_detection_id"))

    op.drop_table("curation_audit")
