"""The database schema: the whole data path from survey images to curated detections.

One typed SQLAlchemy 2 ORM, migrated by Alembic, identical on SQLite and PostgreSQL. Every
stage of the pipeline has its row here. Import tables only from this package
(``from astrid.store.tables import Observation``); importing it registers every table on
``Base.metadata``, so the metadata is complete wherever a table is used.

Data path::

    Survey ─< Observation ─< PreprocessResult
                  │  └──────< Difference >── Reference
                  │               ├─ DetectionLimit
                  │               └─< Candidate ─── Detection >── ModelRun >── Model
                  ├─< StageRun                                     TrainingDataset
                  └─< DomainEvent (outbox)
    CalibrationFrame (bias/dark/flat, per instrument)     User ─< ApiKey, RevokedToken

Modules (each imports only ``base``)::

    base          Base, naming convention, TimestampMixin, utcnow, JSONType, status_enum
    observations  Survey, Observation, ObservationStatus
    calibration   CalibrationFrame
    products      PreprocessResult, Reference, Difference, Candidate
    training      TrainingDataset, Model, ModelRun
    detections    Detection, DetectionStatus
    events        DomainEvent
    pipeline      StageRun, StageRunStatus
    auth          User, ApiKey, RevokedToken, RevokedTokenFamily
    curation      SkyObject, ObjectMember, ObjectMerge, CurationState, Vote, CurationAudit,
                  TaxonomyVersion, CurationConfig, Comment, ExpertReview, Discovery,
                  DetectionAnnotation
    catalog       CatalogRelease, CatalogEntry
    notify        NotificationRule, NotificationDelivery, NotificationAttempt
    schedules     Schedule, FlowRun, FlowRunStatus
    login         LoginFailure (per-account login backoff)
    model_ops     ShadowScore (per-version scores), DriftCheck (per-night PSI)
    limits        DetectionLimit (completeness and limiting magnitudes per difference)
    workers       WorkerProcess (worker heartbeats), QueueState (paused flag)

A new group of tables is a new module here that imports ``base``, plus one import line below.
"""

from astrid.store.tables.auth import ApiKey, RevokedToken, RevokedTokenFamily, User
from astrid.store.tables.base import (
    NAMING,
    Base,
    JSONType,
    TimestampMixin,
    UTCDateTime,
    status_enum,
    utcnow,
)
from astrid.store.tables.calibration import CalibrationFrame
from astrid.store.tables.catalog import CatalogEntry, CatalogRelease
from astrid.store.tables.curation import (
    Comment,
    CurationAudit,
    CurationConfig,
    CurationState,
    CurationStateName,
    DetectionAnnotation,
    Discovery,
    DiscoveryStatus,
    ExpertReview,
    ObjectMember,
    ObjectMerge,
    SkyObject,
    TaxonomyVersion,
    Vote,
    VoteState,
)
from astrid.store.tables.detections import Detection, DetectionStatus
from astrid.store.tables.events import DomainEvent
from astrid.store.tables.limits import DetectionLimit
from astrid.store.tables.login import LoginFailure
from astrid.store.tables.model_ops import DriftCheck, ShadowScore
from astrid.store.tables.notify import NotificationAttempt, NotificationDelivery, NotificationRule
from astrid.store.tables.observations import Observation, ObservationStatus, Survey
from astrid.store.tables.pipeline import StageRun, StageRunStatus
from astrid.store.tables.products import Candidate, Difference, PreprocessResult, Reference
from astrid.store.tables.schedules import FlowRun, FlowRunStatus, Schedule
from astrid.store.tables.training import Model, ModelRun, TrainingDataset
from astrid.store.tables.workers import QueueState, WorkerProcess

__all__ = [
    "NAMING",
    "ApiKey",
    "Base",
    "CalibrationFrame",
    "Candidate",
    "CatalogEntry",
    "CatalogRelease",
    "Comment",
    "CurationAudit",
    "CurationConfig",
    "CurationState",
    "CurationStateName",
    "Detection",
    "DetectionAnnotation",
    "DetectionLimit",
    "DetectionStatus",
    "Difference",
    "Discovery",
    "DiscoveryStatus",
    "DomainEvent",
    "DriftCheck",
    "ExpertReview",
    "FlowRun",
    "FlowRunStatus",
    "JSONType",
    "LoginFailure",
    "Model",
    "ModelRun",
    "NotificationAttempt",
    "NotificationDelivery",
    "NotificationRule",
    "ObjectMember",
    "ObjectMerge",
    "Observation",
    "ObservationStatus",
    "PreprocessResult",
    "QueueState",
    "Reference",
    "RevokedToken",
    "RevokedTokenFamily",
    "Schedule",
    "ShadowScore",
    "SkyObject",
    "StageRun",
    "StageRunStatus",
    "Survey",
    "TaxonomyVersion",
    "TimestampMixin",
    "TrainingDataset",
    "UTCDateTime",
    "User",
    "Vote",
    "VoteState",
    "WorkerProcess",
    "status_enum",
    "utcnow",
]
