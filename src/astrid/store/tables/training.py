"""Machine learning: training datasets, model versions and their runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, TimestampMixin, UTCDateTime, utcnow

__all__ = ["Model", "ModelRun", "TrainingDataset"]


class TrainingDataset(TimestampMixin, Base):
    """A versioned set of labelled stamps; ``version`` is the hash of its sorted member keys."""

    __tablename__ = "training_datasets"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    manifest_key: Mapped[str] = mapped_column(String(128))
    n_members: Mapped[int] = mapped_column(Integer)
    label_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    description: Mapped[str | None] = mapped_column(Text)


class Model(TimestampMixin, Base):
    """A trained model version (mirrors an MLflow registry entry)."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32), doc="Semantic version.")
    alias: Mapped[str | None] = mapped_column(String(32), doc="champion | challenger | None")
    artifact_key: Mapped[str | None] = mapped_column(String(128))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    training_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("training_datasets.id"))


class ModelRun(TimestampMixin, Base):
    """One use of a model: training, evaluation or an inference batch."""

    __tablename__ = "model_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), doc="train | evaluate | inference")
    status: Mapped[str] = mapped_column(String(16), default="running")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
