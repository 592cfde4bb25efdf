"""Real-time alert packets: ZTF Avro alerts → blobs + ``Detection`` rows (``source='alert'``).

For every packet in an Avro file, the ``alert`` stage (:mod:`astrid.pipeline.runner`, keyed by
the packet's sha256 and its index in the file, and the scoring model):

* keeps the packet bytes in the blob store (``cutout_keys['packet']``) and the three
  cutouts as ZTF ships them (gzipped FITS: ``'science'``, ``'template'``, ``'difference'``);
* records a :class:`~astrid.store.tables.Detection` with ``external_id = candid``,
  position, MJD, ``mag = magpsf``, ``snr`` (``scorr``, else ``1.0857 / sigmapsf``) and
  ``extra`` = every scalar candidate field (``magpsf``, ``sigmapsf``, ``isdiffpos``,
  ``fwhm``, ``rb``, ``drb``, ``ssdistnr``, ...) plus a summary of the 30-day history
  (``prv_candidates``: previous detections and upper limits);
* scores it with AstrID's model (:func:`score_with_model`) when one is given, else leaves
  ``confidence = None``.

Bad input is reported and kept, never dropped: a file that is not Avro is parked with its
reason (bytes kept); a packet with an unknown schema version is kept (bytes) and parked
with the reason; a packet with a broken cutout still becomes a detection, with the problem
in ``extra['problems']`` and no score. Re-running a batch resumes: finished packets are
reused, nothing is duplicated (detections are upserted by ``(source, candid)``).
"""

from __future__ import annotations

import gzip
import io
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.domain.events import EventType, record_event
from astrid.domain.objects import register_detection
from astrid.errors import AstridError
from astrid.pipeline.runner import Stage, StageContext, StageOutcome, run_stage, stable_hash
from astrid.runtime import Runtime
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Detection

__all__ = [
    "ALERT_STAGE",
    "SUPPORTED_SCHEMA_VERSIONS",
    "AlertError",
    "AlertOutcome",
    "ParsedAlert",
    "UnknownSchemaError",
    "candidate_fields",
    "find_alert_files",
    "history_summary",
    "ingest_alert_file",
    "ingest_alerts",
    "load_alert_scorer",
    "parse_alert",
    "score_with_model",
]

SUPPORTED_SCHEMA_VERSIONS = frozenset({"3.0", "3.1", "3.2", "3.3"})
"""ZTF alert schema versions whose candidate fields AstrID reads."""

CUTOUTS = {
    "science": "cutoutScience",
    "template": "cutoutTemplate",
    "difference": "cutoutDifference",
}
JD_MJD_OFFSET = 2400000.5


class AlertError(AstridError):
    """An alert file or packet that cannot be used."""


class UnknownSchemaError(AlertError):
    """A packet whose schema version AstrID does not know (kept, not processed)."""


# --------------------------------------------------------------------------- parsing


def _json_scalar(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        return None
    return value


def candidate_fields(candidate: dict[str, Any]) -> dict[str, Any]:
    """Every scalar field of a candidate record, JSON-safe (NaN → None)."""
    return {
        k: _json_scalar(v)
        for k, v in candidate.items()
        if v is None or isinstance(v, (str, int, float, bool))
    }


def history_summary(prv_candidates: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
    """Summary and compact list of an alert's previous detections and upper limits.

    A previous record with a ``candid`` is a detection; one without is an upper limit
    (non-detection to ``diffmaglim``). Times are JD, magnitudes AB.
    """
    prv = list(prv_candidates or [])
    detections = [
        {
            "jd": p.get("jd"),
            "fid": p.get("fid"),
            "magpsf": _json_scalar(p.get("magpsf")),
            "sigmapsf": _json_scalar(p.get("sigmapsf")),
            "isdiffpos": p.get("isdiffpos"),
            "diffmaglim": _json_scalar(p.get("diffmaglim")),
            "candid": p.get("candid"),
        }
        for p in prv
        if p.get("candid") is not None
    ]
    limits = [
        {"jd": p.get("jd"), "fid": p.get("fid"), "diffmaglim": _json_scalar(p.get("diffmaglim"))}
        for p in prv
        if p.get("candid") is None
    ]
    mags = [d["magpsf"] for d in detections if d["magpsf"] is not None]
    jds = [p["jd"] for p in prv if p.get("jd") is not None]
    by_filter: dict[str, int] = {}
    for d in detections:
        by_filter[str(d["fid"])] = by_filter.get(str(d["fid"]), 0) + 1
    return {
        "n_previous": len(prv),
        "n_detections": len(detections),
        "n_upper_limits": len(limits),
        "first_jd": min(jds) if jds else None,
        "last_jd": max(jds) if jds else None,
        "mag_min": min(mags) if mags else None,
        "mag_max": max(mags) if mags else None,
        "detections_per_filter": by_filter,
        "detections": detections,
        "upper_limits": limits,
    }


def _read_cutout(cutout: dict[str, Any] | None, what: str) -> tuple[bytes | None, Any, str | None]:
    """(stored bytes, 2-D image or None, problem or None) for one cutout."""

    if not cutout or not cutout.get("stampData"):
        return None, None, f"{what} cutout is missing"
    raw = bytes(cutout["stampData"])
    try:
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(io.BytesIO(data)) as hdul:
                image = np.asarray(hdul[0].data, dtype=np.float64)
    except Exception as exc:  # gzip/astropy raise many unrelated types on garbage
        return (
            raw,
            None,
            f"{what} cutout is not a readable FITS image ({type(exc).__name__}: {exc})",
        )
    if image.ndim != 2:
        return raw, None, f"{what} cutout has shape {image.shape}, not 2-D"
    return raw, image, None


@dataclass
class ParsedAlert:
    """One packet, read and checked."""

    index: int
    record: dict[str, Any]
    schema_version: str
    candid: int
    object_id: str
    candidate: dict[str, Any]
    cutouts: dict[str, bytes | None] = field(default_factory=dict)
    images: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def scorable(self) -> bool:
        return all(self.images.get(k) is not None for k in CUTOUTS)


def parse_alert(record: dict[str, Any], index: int = 0) -> ParsedAlert:
    """Check one decoded packet and read its cutouts.

    Raises
    ------
    UnknownSchemaError
        ``schemavsn`` is not in :data:`SUPPORTED_SCHEMA_VERSIONS`.
    AlertError
        The record has no candidate, candid or position.
    """
    version = str(record.get("schemavsn"))
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnknownSchemaError(
            f"alert packet {index} has unknown schema version {version!r}",
            hint=f"AstrID reads ZTF schema {', '.join(sorted(SUPPORTED_SCHEMA_VERSIONS))}; "
            "the packet is kept in the blob store",
        )
    cand = record.get("candidate") or {}
    if record.get("candid") is None or cand.get("ra") is None or cand.get("dec") is None:
        raise AlertError(f"alert packet {index} has no candid or candidate position")
    parsed = ParsedAlert(
        index=index,
        record=record,
        schema_version=version,
        candid=int(record["candid"]),
        object_id=str(record.get("objectId")),
        candidate=cand,
    )
    for name, field_name in CUTOUTS.items():
        raw, image, problem = _read_cutout(record.get(field_name), name)
        parsed.cutouts[name] = raw
        parsed.images[name] = image
        if problem:
            parsed.problems.append(problem)
    return parsed


def read_packets(data: bytes, source: str) -> list[dict[str, Any]]:
    """Decode every record of an Avro container file (ZTF: one alert per file)."""

    try:
        records = list(fastavro.reader(io.BytesIO(data)))
    except Exception as exc:  # fastavro raises several unrelated types on bad input
        raise AlertError(
            f"{source}: not a readable Avro alert file ({type(exc).__name__}: {exc})",
            hint="ZTF alerts are Avro container files, one or more packets each",
        ) from exc
    if not records:
        raise AlertError(f"{source}: Avro file holds no alert packet")
    return [r for r in records if isinstance(r, dict)]


# --------------------------------------------------------------------------- scoring


def load_alert_scorer(model: str | Path | None = "default") -> Any:
    """AstrID's real-bogus scorer (:func:`astrid.model.score.load_scorer`), or None.

    ``model`` is ``"default"`` (the model shipped with AstrID), a model package folder,
    or None for no scoring.

    Raises
    ------
    AstridError
        The model cannot be loaded (the message says why).
    """
    if model is None or str(model).lower() == "none":
        return None
    from astrid.model.score import load_scorer  # loads torch (seconds): only when scoring

    return load_scorer(model)


def score_with_model(scorer: Any, alerts: Sequence[ParsedAlert]) -> list[float | None]:
    """Calibrated P(real) from AstrID's model for each alert (None where not scorable).

    Uses :func:`astrid.model.score.score_alerts` on the three cutouts; an alert with a
    broken or unscorable cutout, or a scorer of None, gets None. Scoring problems (stamps
    clipped by a CCD edge, heavily masked stamps) are appended to the alert's ``problems``.
    """
    out: list[float | None] = [None] * len(alerts)
    if scorer is None:
        return out
    from astrid.model.score import score_alerts  # loads torch (seconds): only when scoring
    from astrid.model.ztf import ZtfAlert

    todo = [(i, a) for i, a in enumerate(alerts) if a.scorable]
    if not todo:
        return out
    packets = [
        ZtfAlert(
            object_id=a.object_id,
            candid=a.candid,
            ra=float(a.candidate["ra"]),
            dec=float(a.candidate["dec"]),
            drb=a.candidate.get("drb"),
            rb=a.candidate.get("rb"),
            isdiffpos=str(a.candidate.get("isdiffpos", "t")).lower() in {"t", "1", "true"},
            science=a.images["science"],
            template=a.images["template"],
            difference=a.images["difference"],
            source=str(a.index),
            candidate=candidate_fields(a.candidate),  # xpos/ypos place edge-clipped stamps
        )
        for _, a in todo
    ]
    rows = score_alerts(scorer, packets)
    for (i, a), row in zip(todo, rows, strict=True):
        out[i] = None if row["score"] is None else float(row["score"])
        a.problems.extend(p for p in row["problems"] if p not in a.problems)
    return out


def _model_version(scorer: Any) -> str | None:
    return None if scorer is None else str(scorer.model_version)


# --------------------------------------------------------------------------- the stage


@dataclass
class AlertPayload:
    record: dict[str, Any]
    packet_key: str
    source: str
    scorer: Any = None


@dataclass
class AlertValue:
    parsed: ParsedAlert
    keys: dict[str, str]
    confidence: float | None


def _alert_compute(ctx: StageContext) -> AlertValue:
    payload: AlertPayload = ctx.payload
    parsed = parse_alert(payload.record, ctx.inputs.get("index", 0))
    keys = {"packet": payload.packet_key}
    for name, raw in parsed.cutouts.items():
        if raw is not None:
            keys[name] = ctx.runtime.blobs.put(raw)
    confidence = score_with_model(payload.scorer, [parsed])[0]
    return AlertValue(parsed, keys, confidence)


def _snr(cand: dict[str, Any]) -> float | None:
    scorr = _json_scalar(cand.get("scorr"))
    if scorr is not None:
        return float(scorr)
    sig = _json_scalar(cand.get("sigmapsf"))
    return 1.0857 / float(sig) if sig else None


def _alert_persist(session: Session, ctx: StageContext, value: AlertValue) -> dict[str, Any]:
    payload: AlertPayload = ctx.payload
    parsed = value.parsed
    cand = parsed.candidate
    ra, dec = float(cand["ra"]), float(cand["dec"])
    jd = _json_scalar(cand.get("jd"))
    extra = {
        "objectId": parsed.object_id,
        "schemavsn": parsed.schema_version,
        "source_file": payload.source,
        "candidate": candidate_fields(cand),
        "prv_candidates": history_summary(parsed.record.get("prv_candidates")),
        "problems": list(parsed.problems),
    }
    scorer = payload.scorer
    det = session.scalar(
        select(Detection).where(
            Detection.source == "alert", Detection.external_id == str(parsed.candid)
        )
    )
    created = det is None
    if det is None:
        det = Detection(source="alert", external_id=str(parsed.candid))
        session.add(det)
    det.ra, det.dec = ra, dec
    det.healpix = int(healpix_index(ra, dec))
    det.mjd = None if jd is None else float(jd) - JD_MJD_OFFSET
    det.mag = _json_scalar(cand.get("magpsf"))
    det.snr = _snr(cand)
    if value.confidence is not None or det.confidence is None:
        det.confidence = value.confidence
        det.model_version = _model_version(scorer) if value.confidence is not None else None
    det.cutout_keys = dict(value.keys)
    det.extra = extra
    session.flush()
    register_detection(session, det, ctx.runtime.settings.curation_object_radius_arcsec)
    if created:
        record_event(
            session,
            EventType.DETECTION_CREATED,
            "detection",
            det.id,
            {
                "source": "alert",
                "candid": parsed.candid,
                "objectId": parsed.object_id,
                "ra": ra,
                "dec": dec,
                "confidence": det.confidence,
            },
        )
    return {
        "detection_id": det.id,
        "candid": parsed.candid,
        "created": created,
        "confidence": det.confidence,
        "problems": list(parsed.problems),
    }


ALERT_STAGE: Stage[AlertValue] = Stage(
    name="alert", version="1", compute=_alert_compute, persist=_alert_persist
)


@dataclass(frozen=True)
class AlertOutcome:
    """What happened to one packet (or to a file that could not be read)."""

    path: str
    index: int | None
    status: str  # "stored" | "updated" | "duplicate" | "kept" (parked, bytes kept) | "failed"
    candid: int | None = None
    detection_id: int | None = None
    confidence: float | None = None
    problems: tuple[str, ...] = ()
    error: str | None = None


def find_alert_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand files and folders (``*.avro``, recursively, sorted) into alert files."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            yield from sorted(c for c in p.rglob("*.avro") if c.is_file())
        else:
            yield p


def _unreadable_stage(error: AstridError) -> Stage[None]:
    def compute(ctx: StageContext) -> None:
        raise error

    return Stage(name="alert", version="1", compute=compute, persist=lambda s, c, v: {})


def ingest_alert_file(
    runtime: Runtime, path: str | Path, *, scorer: Any = None
) -> list[AlertOutcome]:
    """Ingest every packet of one Avro file; problems are reported, never raised."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        return [AlertOutcome(str(p), None, "failed", error=f"cannot read {p}: {exc}")]
    packet_key = runtime.blobs.put(data)  # kept whatever it holds
    params = {"model": _model_version(scorer)}
    try:
        records = read_packets(data, str(p))
    except AlertError as exc:
        run = run_stage(
            runtime,
            _unreadable_stage(exc),
            params=params,
            inputs={"path": str(p), "packet": packet_key},
            input_hash=stable_hash({"packet": packet_key}),
        )
        return [AlertOutcome(str(p), None, "failed", error=run.error)]
    outcomes = []
    for index, record in enumerate(records):
        run = run_stage(
            runtime,
            ALERT_STAGE,
            params=params,
            inputs={"path": str(p), "packet": packet_key, "index": index},
            input_hash=stable_hash({"packet": packet_key, "index": index}),
            payload=AlertPayload(record, packet_key, str(p), scorer),
        )
        outcomes.append(_to_outcome(str(p), index, run))
    return outcomes


def _to_outcome(path: str, index: int, run: StageOutcome) -> AlertOutcome:
    if not run.ok:
        status = "kept" if run.error and "UnknownSchemaError" in run.error else "failed"
        return AlertOutcome(path, index, status, error=run.error)
    r = run.result
    return AlertOutcome(
        path,
        index,
        "duplicate" if run.reused else ("stored" if r.get("created") else "updated"),
        candid=r.get("candid"),
        detection_id=r.get("detection_id"),
        confidence=r.get("confidence"),
        problems=tuple(r.get("problems", ())),
    )


def ingest_alerts(
    runtime: Runtime,
    paths: Iterable[str | Path],
    *,
    scorer: Any = None,
    on_progress: Callable[[AlertOutcome], None] | None = None,
) -> list[AlertOutcome]:
    """Ingest alert files and folders; a bad file does not stop the batch."""
    outcomes: list[AlertOutcome] = []
    for path in find_alert_files(paths):
        for outcome in ingest_alert_file(runtime, path, scorer=scorer):
            outcomes.append(outcome)
            if on_progress is not None:
                on_progress(outcome)
    return outcomes
