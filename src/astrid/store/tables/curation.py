"""Tables of the human loop: sky objects, votes, curation state, comments, review, discoveries.

They live on :class:`astrid.store.tables.Base` (one metadata, one migration history) and are
created by migration ``0005``. Rules live in :mod:`astrid.domain` (``objects``, ``votes``,
``taxonomy``, ``comments``, ``review``); these classes only say what is stored.

Relations::

    SkyObject ─< ObjectMember >── Detection ──1 CurationState
        ├─< ObjectMerge (ids merged into it, kept as aliases)
        │                            ├─< Vote >── User
        │                            ├─< DetectionAnnotation
        ├─< Comment (object or detection) ─── User
        ├─< ExpertReview (object or detection)
        └──1 Discovery              CurationAudit (every change, before/after)
    TaxonomyVersion (versioned classification tree)   CurationConfig (consensus rule, ...)
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from astrid.store.tables.base import Base, TimestampMixin, UTCDateTime, utcnow

__all__ = [
    "Comment",
    "CurationAudit",
    "CurationConfig",
    "CurationState",
    "CurationStateName",
    "DetectionAnnotation",
    "Discovery",
    "DiscoveryStatus",
    "ExpertReview",
    "ObjectMember",
    "ObjectMerge",
    "SkyObject",
    "TaxonomyVersion",
    "Vote",
    "VoteState",
]


class CurationStateName(enum.StrEnum):
    """Where a detection stands in the human loop."""

    AWAITING = "awaiting"  # in the scanning queue
    CONSENSUS_REAL = "consensus_real"
    CONSENSUS_BOGUS = "consensus_bogus"
    EXPERT_QUEUE = "expert_queue"  # curators disagree, or escalated
    EXPERT_REAL = "expert_real"  # decided by an expert review
    EXPERT_BOGUS = "expert_bogus"


class VoteState(enum.StrEnum):
    """A vote is active until the same user votes again (superseded) or takes it back."""

    ACTIVE = "active"
    SUPERSEDED = "superseded"
    UNDONE = "undone"


class DiscoveryStatus(enum.StrEnum):
    """Life of a discovery: new → follow-up requested → confirmed → reported."""

    NEW = "new"
    FOLLOW_UP_REQUESTED = "follow_up_requested"
    CONFIRMED = "confirmed"
    REPORTED = "reported"
    RETRACTED = "retracted"


class SkyObject(TimestampMixin, Base):
    """Detections within the association radius of each other, across epochs and alerts.

    The position is the inverse-variance (S/N²) weighted mean of its detections, kept as the
    weighted sum of unit vectors (``sx, sy, sz``) so that a new detection updates it in O(1)
    and the mean is right across RA = 0 and at the poles.
    """

    __tablename__ = "sky_objects"
    __table_args__ = (Index("ix_sky_objects_last_mjd", "last_mjd"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ra: Mapped[float] = mapped_column(Float, doc="Weighted mean RA, degrees [0, 360).")
    dec: Mapped[float] = mapped_column(Float, doc="Weighted mean Dec, degrees.")
    healpix: Mapped[int] = mapped_column(BigInteger, index=True, doc="Nested order-29 pixel.")
    sx: Mapped[float] = mapped_column(Float, default=0.0, doc="Σ w·x of unit vectors.")
    sy: Mapped[float] = mapped_column(Float, default=0.0)
    sz: Mapped[float] = mapped_column(Float, default=0.0)
    weight: Mapped[float] = mapped_column(Float, default=0.0, doc="Σ w.")
    first_mjd: Mapped[float | None] = mapped_column(Float)
    last_mjd: Mapped[float | None] = mapped_column(Float)
    peak_mag: Mapped[float | None] = mapped_column(Float, doc="Brightest (smallest) mag.")
    latest_mag: Mapped[float | None] = mapped_column(Float, doc="Mag at last_mjd.")
    max_confidence: Mapped[float | None] = mapped_column(Float, index=True)
    n_detections: Mapped[int] = mapped_column(Integer, default=0)
    ztf_object_id: Mapped[str | None] = mapped_column(String(32), index=True)
    aliases: Mapped[list[Any]] = mapped_column(default=list, doc="Other names (ZTF objectId).")
    label: Mapped[str | None] = mapped_column(String(16), doc="real | bogus once curated.")
    classification: Mapped[str | None] = mapped_column(String(256), doc="Taxonomy path.")
    crossmatched_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), doc="When its detections were last cross-matched (None: never)."
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ObjectMerge(Base):
    """An object id merged into an older object: the old id stays an alias of the kept one.

    Written when a detection lies within the association radius of two objects; the merged
    object's row is gone, so ``merged_id`` is no foreign key.
    """

    __tablename__ = "object_merges"

    merged_id: Mapped[int] = mapped_column(Integer, primary_key=True, doc="The retired id.")
    object_id: Mapped[int] = mapped_column(
        ForeignKey("sky_objects.id"), index=True, doc="The kept (older) object."
    )
    detection_id: Mapped[int | None] = mapped_column(
        ForeignKey("detections.id"), doc="The detection that joined them."
    )
    n_detections: Mapped[int] = mapped_column(Integer, default=0, doc="Detections moved over.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ObjectMember(Base):
    """A detection's object (each detection belongs to at most one)."""

    __tablename__ = "object_members"

    detection_id: Mapped[int] = mapped_column(ForeignKey("detections.id"), primary_key=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("sky_objects.id"), index=True)
    separation_arcsec: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CurationState(Base):
    """The curation state of one detection, with the queue's sort keys copied in.

    ``score`` (P(real), -1 when unscored) and ``margin`` (|P - 0.5|, small = the model is
    unsure) are copies of the detection's confidence so that the scanning queue reads one
    narrow, indexed table; ``version`` increments on every change (the row is locked by that
    update before votes are counted, which serialises concurrent votes on one detection).
    """

    __tablename__ = "curation_states"
    __table_args__ = (
        Index("ix_curation_states_state_score", "state", "score", "detection_id"),
        Index("ix_curation_states_state_margin", "state", "margin", "detection_id"),
        Index("ix_curation_states_state_detection", "state", "detection_id"),
    )

    detection_id: Mapped[int] = mapped_column(ForeignKey("detections.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(24), default=CurationStateName.AWAITING.value)
    label: Mapped[str | None] = mapped_column(String(16), doc="Decided label: real | bogus.")
    classification: Mapped[str | None] = mapped_column(String(256))
    score: Mapped[float] = mapped_column(Float, default=-1.0)
    margin: Mapped[float] = mapped_column(Float, default=0.5)
    n_real: Mapped[int] = mapped_column(Integer, default=0)
    n_bogus: Mapped[int] = mapped_column(Integer, default=0)
    n_skip: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(256), doc="Why it is where it is.")
    version: Mapped[int] = mapped_column(Integer, default=0)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Vote(Base):
    """One curator's vote on a detection; a new vote by the same user supersedes the old."""

    __tablename__ = "votes"
    __table_args__ = (
        Index("ix_votes_detection_state", "detection_id", "state"),
        Index("ix_votes_user_created", "user_id", "created_at"),
        # At most one active vote per user and detection (both backends honour partial indexes).
        Index(
            "uq_votes_active_user",
            "detection_id",
            "user_id",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    detection_id: Mapped[int] = mapped_column(ForeignKey("detections.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    role: Mapped[str] = mapped_column(String(16), doc="Role of the voter when voting.")
    label: Mapped[str] = mapped_column(String(8), doc="real | bogus | skip")
    classification: Mapped[str | None] = mapped_column(String(256), doc="Taxonomy path.")
    taxonomy_version: Mapped[int | None] = mapped_column(Integer)
    probability: Mapped[float | None] = mapped_column(Float, doc="Voter's confidence, 0..1.")
    comment: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=VoteState.ACTIVE.value)
    session_id: Mapped[str | None] = mapped_column(String(64), doc="Client scanning session.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), doc="When superseded or undone."
    )


class CurationAudit(Base):
    """Append-only trail of every vote, undo and state change: who, when, before, after."""

    __tablename__ = "curation_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(32), doc="vote | undo | state | review | ...")
    detection_id: Mapped[int | None] = mapped_column(Integer, index=True)
    object_id: Mapped[int | None] = mapped_column(Integer, index=True)
    vote_id: Mapped[int | None] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    username: Mapped[str | None] = mapped_column(String(128))
    before: Mapped[dict[str, Any]] = mapped_column(default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TaxonomyVersion(Base):
    """One immutable version of the classification tree (``paths``: its flattened nodes)."""

    __tablename__ = "taxonomy_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    tree: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="{name: {child: {...}}}")
    paths: Mapped[list[Any]] = mapped_column(default=list, doc="Every 'a/b/c' path.")
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CurationConfig(Base):
    """Curation settings an admin changes at run time (the consensus rule, ...)."""

    __tablename__ = "curation_config"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_by: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Comment(TimestampMixin, Base):
    """Plain text on a detection or an object (never HTML); ``mentions``: usernames."""

    __tablename__ = "comments"
    __table_args__ = (
        Index("ix_comments_detection", "detection_id", "id"),
        Index("ix_comments_object", "object_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    detection_id: Mapped[int | None] = mapped_column(ForeignKey("detections.id"))
    object_id: Mapped[int | None] = mapped_column(ForeignKey("sky_objects.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    mentions: Mapped[list[Any]] = mapped_column(default=list)


class ExpertReview(TimestampMixin, Base):
    """An expert's verdict (confirm | dispute), scientific importance 1–5 and notes."""

    __tablename__ = "expert_reviews"
    __table_args__ = (
        Index("ix_expert_reviews_detection", "detection_id"),
        Index("ix_expert_reviews_object", "object_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    detection_id: Mapped[int | None] = mapped_column(ForeignKey("detections.id"))
    object_id: Mapped[int | None] = mapped_column(ForeignKey("sky_objects.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    verdict: Mapped[str] = mapped_column(String(16), doc="confirm | dispute")
    label: Mapped[str | None] = mapped_column(String(16), doc="real | bogus decided.")
    classification: Mapped[str | None] = mapped_column(String(256))
    importance: Mapped[int | None] = mapped_column(Integer, doc="1 (routine) .. 5 (major).")
    notes: Mapped[str | None] = mapped_column(Text)


class Discovery(TimestampMixin, Base):
    """An object marked high priority; its status history is in :class:`CurationAudit`."""

    __tablename__ = "discoveries"
    __table_args__ = (Index("ix_discoveries_status", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("sky_objects.id"), unique=True)
    status: Mapped[str] = mapped_column(String(24), default=DiscoveryStatus.NEW.value)
    name: Mapped[str | None] = mapped_column(String(64), doc="Designation, e.g. a TNS name.")
    classification: Mapped[str | None] = mapped_column(String(256))
    importance: Mapped[int | None] = mapped_column(Integer)
    notes: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class DetectionAnnotation(TimestampMixin, Base):
    """A fact attached to a detection (or object): nearest star/galaxy, solar-system body, tag.

    ``kind`` is ``star | galaxy | solar_system | tag | ...``; the cross-match layer writes
    them, the scanning queue filters on them and shows them.
    """

    __tablename__ = "detection_annotations"
    __table_args__ = (
        Index("ix_detection_annotations_detection_kind", "detection_id", "kind"),
        Index("ix_detection_annotations_object", "object_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    detection_id: Mapped[int | None] = mapped_column(ForeignKey("detections.id"))
    object_id: Mapped[int | None] = mapped_column(ForeignKey("sky_objects.id"))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(128))
    separation_arcsec: Mapped[float | None] = mapped_column(Float)
    mag: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(String(64), doc="gaia_dr3 | local | skybot ...")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
