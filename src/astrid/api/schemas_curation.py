"""Request and response bodies of the curation routes (scanning, votes, objects, review).

Text fields (comments, notes) are plain text: they come back exactly as stored and clients
must render them escaped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BulkVoteIn",
    "CommentIn",
    "CommentOut",
    "ConsensusRuleIn",
    "CurationStateOut",
    "DiscoveryIn",
    "DiscoveryPatch",
    "EscalateIn",
    "MergeIn",
    "ObjectOut",
    "ObjectReviewIn",
    "ReviewIn",
    "TaxonomyIn",
    "VoteIn",
    "VoteOut",
]

Label = Literal["real", "bogus", "skip"]
Text = Field(default=None, max_length=20_000, description="Plain text (never HTML).")


class EscalateIn(BaseModel):
    """Why a curator sends a detection to the experts (optional)."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000)


class VoteIn(BaseModel):
    """A curator's vote: ``label`` and optionally a taxonomy path, probability, comment."""

    model_config = ConfigDict(extra="forbid")
    label: Label
    classification: str | None = Field(
        default=None, max_length=256, examples=["transient/supernova/Ia"]
    )
    probability: float | None = Field(default=None, ge=0, le=1)
    comment: str | None = Text
    session_id: str | None = Field(default=None, max_length=64, description="Scanning session.")


class BulkVoteIn(VoteIn):
    """The same vote on a selection of detections (each succeeds or fails on its own)."""

    detection_ids: list[int] = Field(min_length=1, max_length=500)


class VoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    detection_id: int
    user_id: int
    username: str | None = None
    role: str
    label: str
    classification: str | None
    probability: float | None
    comment: str | None
    state: str
    created_at: datetime
    ended_at: datetime | None = None


class CurationStateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    detection_id: int
    state: str
    label: str | None
    classification: str | None
    n_real: int
    n_bogus: int
    n_skip: int
    reason: str | None
    decided_at: datetime | None


class ConsensusRuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agreeing: int = Field(ge=1, le=20)
    expert_decides: bool = True


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=20_000, description="Plain text; @name mentions.")


class CommentOut(BaseModel):
    id: int
    detection_id: int | None
    object_id: int | None
    user_id: int
    username: str
    body: str
    mentions: list[str]
    created_at: datetime


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["confirm", "dispute"]
    label: Literal["real", "bogus"] | None = None
    classification: str | None = Field(default=None, max_length=256)
    importance: int | None = Field(default=None, ge=1, le=5)
    notes: str | None = Text


class ObjectReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: Literal["confirm", "dispute"]
    classification: str | None = Field(default=None, max_length=256)
    importance: int | None = Field(default=None, ge=1, le=5)
    notes: str | None = Text


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    other_id: int = Field(ge=1, le=2**31 - 1, description="The object that is the same source.")


class DiscoveryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=64)
    classification: str | None = Field(default=None, max_length=256)
    importance: int | None = Field(default=None, ge=1, le=5)
    notes: str | None = Text


class DiscoveryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["new", "follow_up_requested", "confirmed", "reported", "retracted"]
    note: str | None = Text


class TaxonomyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tree: dict[str, Any]
    note: str | None = Field(default=None, max_length=2000)


class ObjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    ra: float
    dec: float
    first_mjd: float | None
    last_mjd: float | None
    peak_mag: float | None
    latest_mag: float | None
    max_confidence: float | None
    n_detections: int
    ztf_object_id: str | None
    aliases: list[Any]
    label: str | None
    classification: str | None
    crossmatched_at: datetime | None = None
    created_at: datetime
