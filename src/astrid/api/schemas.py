"""Request and response bodies of the API (pydantic models, the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from astrid.store.tables import DetectionStatus, ObservationStatus

__all__ = [
    "MAX_FILENAME",
    "NO_NUL",
    "AlertIngestResult",
    "AlertPacketOut",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyOut",
    "BatchObservation",
    "BatchOut",
    "CandidateDetail",
    "CandidateOut",
    "ConeHit",
    "DetectionDetail",
    "DetectionOut",
    "FailureOut",
    "IngestResult",
    "IngestedImage",
    "ModelOut",
    "ModelVersionOut",
    "ObservationDetail",
    "ObservationOut",
    "ObservationValidate",
    "PipelineRunRequest",
    "PositionImage",
    "PositionIngest",
    "PositionResult",
    "PromoteRequest",
    "RefreshIn",
    "Role",
    "RoleChange",
    "Scope",
    "StatusChange",
    "TokenOut",
    "UserCreate",
    "UserOut",
    "ValidationReport",
]

#: Pattern of text form fields: anything but NUL (PostgreSQL cannot store it).
NO_NUL = r"^[^\x00]*$"
#: Longest upload file name accepted (the common file-system limit).
MAX_FILENAME = 255

Role = Literal["viewer", "curator", "expert", "admin"]
Scope = Literal["read", "write"]


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class _Input(BaseModel):
    """A request body: no NUL characters in any text (databases refuse them), named by field."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("NUL characters are not allowed")
        return value


class _Orm(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ObservationOut(_Orm):
    id: int
    survey_id: int
    content_hash: str
    filename: str | None
    ra: float = Field(description="Image centre RA, degrees.")
    dec: float = Field(description="Image centre Dec, degrees.")
    mjd: float | None
    filter: str | None
    exposure_time: float | None = Field(description="Seconds.")
    telescope: str | None
    instrument: str | None
    width: int
    height: int
    pixel_scale: float | None = Field(description="arcsec / pixel.")
    airmass: float | None
    status: ObservationStatus
    status_reason: str | None
    created_at: datetime
    updated_at: datetime


class ObservationDetail(ObservationOut):
    source: str | None
    hdu_index: int
    gain: float | None
    read_noise: float | None
    saturation: float | None
    footprint: list[Any]
    extra: dict[str, Any]


class ConeHit(ObservationOut):
    separation_deg: float


class StatusChange(_Input):
    model_config = ConfigDict(extra="forbid")
    status: ObservationStatus
    reason: str | None = Field(default=None, max_length=2000)


class ObservationValidate(_Input):
    """Metadata to check before ingesting (nothing is stored)."""

    model_config = ConfigDict(extra="forbid")
    ra: float = Field(description="Degrees, [0, 360).")
    dec: float = Field(description="Degrees, [-90, 90].")
    mjd: float | None = None
    exposure_time: float | None = Field(default=None, description="Seconds, > 0.")
    filter: str | None = Field(default=None, max_length=64)
    width: int | None = None
    height: int | None = None


class ValidationReport(BaseModel):
    valid: bool
    errors: list[dict[str, str]]


class IngestedImage(BaseModel):
    """One CCD of an uploaded mosaic: its observation, or why it was refused."""

    hdu_index: int
    hdu_name: str
    observation_id: int | None
    created: bool
    error: str | None


class IngestResult(BaseModel):
    observation_id: int = Field(description="The observation (a mosaic's first stored CCD).")
    created: bool
    filename: str | None
    observation_ids: list[int] = Field(
        default_factory=list,
        description="Every observation the file made: one, or one per CCD of a mosaic.",
    )
    images: list[IngestedImage] | None = Field(
        default=None, description="A mosaic's CCDs, refused ones with their reason; else null."
    )


class DetectionOut(_Orm):
    id: int
    observation_id: int | None
    candidate_id: int | None
    model_version: str | None
    ra: float
    dec: float
    mjd: float | None
    snr: float | None
    mag: float | None
    confidence: float | None
    status: DetectionStatus
    label: str | None
    source: str
    external_id: str | None
    created_at: datetime


class DetectionDetail(DetectionOut):
    model_run_id: int | None
    validated_by: str | None
    validated_at: datetime | None
    cutout_keys: dict[str, Any]
    extra: dict[str, Any]


class UserCreate(_Input):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=8, max_length=256)
    role: Role = "viewer"
    email: str | None = Field(default=None, max_length=256)


class UserOut(_Orm):
    id: int
    username: str
    email: str | None
    role: str
    is_active: bool
    created_at: datetime


class RoleChange(_Input):
    model_config = ConfigDict(extra="forbid")
    role: Role


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class RefreshIn(_Input):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=4096)


class ApiKeyCreate(_Input):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(default=["read"], min_length=1, max_length=2)
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)


class ApiKeyOut(_Orm):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key in clear: shown this once, store it now.")


class CandidateOut(_Orm):
    id: int
    difference_id: int
    observation_id: int
    ra: float
    dec: float
    x: float = Field(description="Pixels.")
    y: float = Field(description="Pixels.")
    snr: float
    flux: float | None
    flux_err: float | None
    mag: float | None
    score: float | None = Field(description="Rule-based score.")
    flags: int
    created_at: datetime


class CandidateDetail(CandidateOut):
    features: dict[str, Any]


# --------------------------------------------------------------------------- pipeline


class PipelineRunRequest(_Input):
    """Which observations to process: ``observation_ids`` or ``pending: true``."""

    observation_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(
        default=None, max_length=1000, description="Observations to process."
    )
    pending: bool = Field(default=False, description="Process every observation with work left.")
    limit: int | None = Field(
        default=None, ge=1, le=10000, description="With pending: at most this many."
    )
    retry_failed: bool = Field(default=False, description="Give failed observations another go.")


class BatchObservation(BaseModel):
    observation_id: int
    status: str | None
    stage_runs: dict[str, dict[str, int]] = Field(description="{stage: {status: n}}.")


class BatchOut(BaseModel):
    id: str
    state: Literal["queued", "running", "finished", "failed"]
    retry_failed: bool
    requested_by: str | None
    created_at: datetime
    finished_at: datetime | None
    error: str | None
    observation_ids: list[int]
    stage_runs: dict[str, int] = Field(description="Stage runs of the batch per status.")
    observations: list[BatchObservation]


class FailureOut(_Orm):
    id: int
    stage: str
    stage_version: str
    observation_id: int | None
    attempts: int
    error: str | None
    error_kind: str | None
    inputs: dict[str, Any]
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None


# --------------------------------------------------------------------------- models


class ModelVersionOut(BaseModel):
    name: str
    version: int = Field(description="Registry version number.")
    semver: str
    aliases: list[str]
    run_id: str | None
    source: str | None
    created: int | None = Field(description="Registration time, ms since the epoch.")
    metrics: dict[str, float] = Field(description="Metrics of the training run.")


class ModelOut(BaseModel):
    name: str
    aliases: dict[str, int]
    versions: list[ModelVersionOut]


class PromoteRequest(_Input):
    version: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Registry number, semantic version or alias.",
    )
    alias: str = Field(default="champion", min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")


# --------------------------------------------------------------------------- ingestion


class PositionIngest(_Input):
    """Images of one field from a public archive."""

    archive: Literal["skyview", "mast"] = "skyview"
    survey: str = Field(min_length=1, max_length=64, description="'DSS2 Red', 'JWST', ...")
    ra: float = Field(description="Field centre RA, degrees [0, 360).")
    dec: float = Field(description="Field centre Dec, degrees [-90, 90].")
    fov: float = Field(description="Field of view, degrees (0, max].")
    pixels: int = Field(default=300, description="Image side, pixels [8, 4096].")
    max_images: int = Field(default=5, description="At most this many images [1, 100].")


class PositionImage(BaseModel):
    status: str
    observation_id: int | None
    error: str | None


class PositionResult(BaseModel):
    archive: str
    survey: str
    fetch_status: str
    fetch_error: str | None
    images: list[PositionImage]


class AlertPacketOut(BaseModel):
    index: int | None
    status: str
    candid: int | None
    detection_id: int | None
    problems: list[str]
    error: str | None


class AlertIngestResult(BaseModel):
    filename: str
    packets: list[AlertPacketOut]
