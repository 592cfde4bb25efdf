"""Initial schema: the whole data path (surveys to detections, outbox).

Revision ID: 0001
Revises:
Create Date: 2026-11-22 10:29:21.480251
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "calibration_frames",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("instrument", sa.String(length=128), nullable=True),
        sa.Column("filter", sa.String(length=64), nullable=True),
        sa.Column("exposure_time", sa.Float(), nullable=True),
        sa.Column("binning", sa.String(length=16), nullable=True),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("mjd", sa.Float(), nullable=True),
        sa.Column("blob_key", sa.String(length=128), nullable=False),
        sa.Column("n_frames", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibration_frames")),
    )
    op.create_table(
        "domain_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("aggregate_type", sa.String(length=32), nullable=False),
        sa.Column("aggregate_id", sa.Integer(), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_events")),
    )
    with op.batch_alter_table("domain_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_domain_events_event_type"), ["event_type"], unique=False
        )
        batch_op.create_index(
            "ix_domain_events_undispatched", ["dispatched_at", "id"], unique=False
        )

    op.create_table(
        "surveys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("telescope", sa.String(length=128), nullable=True),
        sa.Column("instrument", sa.String(length=128), nullable=True),
        sa.Column("site_lon", sa.Float(), nullable=True),
        sa.Column("site_lat", sa.Float(), nullable=True),
        sa.Column("site_height", sa.Float(), nullable=True),
        sa.Column(
            "capabilities",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
        sa.UniqueConstraint("name", name=op.f("uq_surveys_name")),
    )
    op.create_table(
        "training_datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("manifest_key", sa.String(length=128), nullable=False),
        sa.Column("n_members", sa.Integer(), nullable=False),
        sa.Column(
            "label_counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_datasets")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_training_datasets_name")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("alias", sa.String(length=32), nullable=True),
        sa.Column("artifact_key", sa.String(length=128), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column(
            "config",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("training_dataset_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["training_dataset_id"],
            ["training_datasets.id"],
            name=op.f("fk_models_training_dataset_id_training_datasets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_models_name")),
    )
    op.create_table(
        "observations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survey_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("blob_key", sa.String(length=128), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("filename", sa.String(length=512), nullable=True),
        sa.Column("hdu_index", sa.Integer(), nullable=False),
        sa.Column("ra", sa.Float(), nullable=False),
        sa.Column("dec", sa.Float(), nullable=False),
        sa.Column("healpix", sa.BigInteger(), nullable=False),
        sa.Column("mjd", sa.Float(), nullable=True),
        sa.Column("filter", sa.String(length=64), nullable=True),
        sa.Column("exposure_time", sa.Float(), nullable=True),
        sa.Column("telescope", sa.String(length=128), nullable=True),
        sa.Column("instrument", sa.String(length=128), nullable=True),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("pixel_scale", sa.Float(), nullable=True),
        sa.Column("gain", sa.Float(), nullable=True),
        sa.Column("read_noise", sa.Float(), nullable=True),
        sa.Column("saturation", sa.Float(), nullable=True),
        sa.Column("airmass", sa.Float(), nullable=True),
        sa.Column(
            "footprint",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "extra",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "ingested",
                "preprocessing",
                "preprocessed",
                "differencing",
                "differenced",
                "detecting",
                "completed",
                "failed",
                "archived",
                name="observation_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"], name=op.f("fk_observations_survey_id_surveys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
        sa.UniqueConstraint("content_hash", name=op.f("uq_observations_content_hash")),
    )
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_observations_healpix"), ["healpix"], unique=False)
        batch_op.create_index(batch_op.f("ix_observations_mjd"), ["mjd"], unique=False)
        batch_op.create_index(batch_op.f("ix_observations_status"), ["status"], unique=False)
        batch_op.create_index(
            "ix_observations_status_created", ["status", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_observations_survey_id"), ["survey_id"], unique=False)
        batch_op.create_index(
            "ix_observations_survey_status", ["survey_id", "status"], unique=False
        )

    op.create_table(
        "reference_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survey_id", sa.Integer(), nullable=True),
        sa.Column("filter", sa.String(length=64), nullable=True),
        sa.Column("ra", sa.Float(), nullable=False),
        sa.Column("dec", sa.Float(), nullable=False),
        sa.Column("healpix", sa.BigInteger(), nullable=False),
        sa.Column("blob_key", sa.String(length=128), nullable=False),
        sa.Column("variance_key", sa.String(length=128), nullable=True),
        sa.Column(
            "observation_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("fwhm", sa.Float(), nullable=True),
        sa.Column("depth", sa.Float(), nullable=True),
        sa.Column("mjd_start", sa.Float(), nullable=True),
        sa.Column("mjd_end", sa.Float(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"], name=op.f("fk_reference_images_survey_id_surveys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reference_images")),
    )
    with op.batch_alter_table("reference_images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reference_images_healpix"), ["healpix"], unique=False)

    op.create_table(
        "differences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=False),
        sa.Column("reference_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("stage_version", sa.String(length=32), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("difference_key", sa.String(length=128), nullable=False),
        sa.Column("scorr_key", sa.String(length=128), nullable=True),
        sa.Column("n_candidates", sa.Integer(), nullable=False),
        sa.Column(
            "stats",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_differences_observation_id_observations"),
        ),
        sa.ForeignKeyConstraint(
            ["reference_id"],
            ["reference_images.id"],
            name=op.f("fk_differences_reference_id_reference_images"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_differences")),
        sa.UniqueConstraint(
            "observation_id",
            "reference_id",
            "method",
            "params_hash",
            name=op.f("uq_differences_observation_id"),
        ),
    )
    with op.batch_alter_table("differences", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_differences_observation_id"), ["observation_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_differences_reference_id"), ["reference_id"], unique=False
        )

    op.create_table(
        "model_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_model_runs_model_id_models")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_runs")),
    )
    with op.batch_alter_table("model_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_runs_model_id"), ["model_id"], unique=False)

    op.create_table(
        "preprocess_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=False),
        sa.Column("stage_version", sa.String(length=32), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("image_key", sa.String(length=128), nullable=False),
        sa.Column("variance_key", sa.String(length=128), nullable=True),
        sa.Column("mask_key", sa.String(length=128), nullable=True),
        sa.Column("background", sa.Float(), nullable=True),
        sa.Column("noise", sa.Float(), nullable=True),
        sa.Column("fwhm", sa.Float(), nullable=True),
        sa.Column("ellipticity", sa.Float(), nullable=True),
        sa.Column("limiting_mag", sa.Float(), nullable=True),
        sa.Column("astrometric_rms", sa.Float(), nullable=True),
        sa.Column("quality_score", sa.Float(), nullable=True),
        sa.Column(
            "quality",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "timings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_preprocess_results_observation_id_observations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_preprocess_results")),
        sa.UniqueConstraint(
            "observation_id", "params_hash", name=op.f("uq_preprocess_results_observation_id")
        ),
    )
    with op.batch_alter_table("preprocess_results", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_preprocess_results_observation_id"), ["observation_id"], unique=False
        )

    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("difference_id", sa.Integer(), nullable=False),
        sa.Column("observation_id", sa.Integer(), nullable=False),
        sa.Column("ra", sa.Float(), nullable=False),
        sa.Column("dec", sa.Float(), nullable=False),
        sa.Column("healpix", sa.BigInteger(), nullable=False),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.Column("snr", sa.Float(), nullable=False),
        sa.Column("flux", sa.Float(), nullable=True),
        sa.Column("flux_err", sa.Float(), nullable=True),
        sa.Column("mag", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column(
            "features",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["difference_id"],
            ["differences.id"],
            name=op.f("fk_candidates_difference_id_differences"),
        ),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_candidates_observation_id_observations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidates")),
    )
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_candidates_difference_id"), ["difference_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_candidates_healpix"), ["healpix"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_candidates_observation_id"), ["observation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_candidates_snr"), ["snr"], unique=False)

    op.create_table(
        "detections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=True),
        sa.Column("observation_id", sa.Integer(), nullable=True),
        sa.Column("model_run_id", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("ra", sa.Float(), nullable=False),
        sa.Column("dec", sa.Float(), nullable=False),
        sa.Column("healpix", sa.BigInteger(), nullable=False),
        sa.Column("mjd", sa.Float(), nullable=True),
        sa.Column("snr", sa.Float(), nullable=True),
        sa.Column("mag", sa.Float(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "validated",
                "rejected",
                "confirmed",
                "archived",
                name="detection_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("label", sa.String(length=32), nullable=True),
        sa.Column("validated_by", sa.String(length=128), nullable=True),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "cutout_keys",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column(
            "extra",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_id"], ["candidates.id"], name=op.f("fk_detections_candidate_id_candidates")
        ),
        sa.ForeignKeyConstraint(
            ["model_run_id"], ["model_runs.id"], name=op.f("fk_detections_model_run_id_model_runs")
        ),
        sa.ForeignKeyConstraint(
            ["observation_id"],
            ["observations.id"],
            name=op.f("fk_detections_observation_id_observations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detections")),
        sa.UniqueConstraint("candidate_id", name=op.f("uq_detections_candidate_id")),
    )
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_detections_external_id"), ["external_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_detections_healpix"), ["healpix"], unique=False)
        batch_op.create_index(batch_op.f("ix_detections_mjd"), ["mjd"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_detections_observation_id"), ["observation_id"], unique=False
        )
        batch_op.create_index(
            "ix_detections_status_confidence", ["status", "confidence"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_index("ix_detections_status_confidence")
        batch_op.drop_index(batch_op.f("ix_detections_observation_id"))
        batch_op.drop_index(batch_op.f("ix_detections_mjd"))
        batch_op.drop_index(batch_op.f("ix_detections_healpix"))
        batch_op.drop_index(batch_op.f("ix_detections_external_id"))

    op.drop_table("detections")
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_candidates_snr"))
        batch_op.drop_index(batch_op.f("ix_candidates_observation_id"))
        batch_op.drop_index(batch_op.f("ix_candidates_healpix"))
        batch_op.drop_index(batch_op.f("ix_candidates_difference_id"))

    op.drop_table("candidates")
    with op.batch_alter_table("preprocess_results", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_preprocess_results_observation_id"))

    op.drop_table("preprocess_results")
    with op.batch_alter_table("model_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_runs_model_id"))

    op.drop_table("model_runs")
    with op.batch_alter_table("differences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_differences_reference_id"))
        batch_op.drop_index(batch_op.f("ix_differences_observation_id"))

    op.drop_table("differences")
    with op.batch_alter_table("reference_images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reference_images_healpix"))

    op.drop_table("reference_images")
    with op.batch_alter_table("observations", schema=None) as batch_op:
        batch_op.drop_index("ix_observations_survey_status")
        batch_op.drop_index(batch_op.f("ix_observations_survey_id"))
        batch_op.drop_index("ix_observations_status_created")
        batch_op.drop_index(batch_op.f("ix_observations_status"))
        batch_op.drop_index(batch_op.f("ix_observations_mjd"))
        batch_op.drop_index(batch_op.f("ix_observations_healpix"))

    op.drop_table("observations")
    op.drop_table("models")
    op.drop_table("training_datasets")
    op.drop_table("surveys")
    with op.batch_alter_table("domain_events", schema=None) as batch_op:
        batch_op.drop_index("ix_domain_events_undispatched")
        batch_op.drop_index(batch_op.f("ix_domain_events_event_type"))

    op.drop_table("domain_events")
    op.drop_table("calibration_frames")
