"""AT reports for the Transient Name Server in TNS's bulk-report JSON format, and sending one.

:func:`at_report` builds ``{"at_report": {"0": {...}}}`` from an object's position, its first
detection, its last non-detection before it and its photometry (TNS field names: ``ra``,
``dec`` as ``{"value", "error", "units"}``, ``discovery_datetime``, ``non_detection``,
``photometry.photometry_group``). :func:`send_at_report` POSTs it the way TNS's bulk-report
API takes it (form fields ``api_key`` and ``data``, a ``tns_marker`` User-Agent) and returns
TNS's answer; ``ASTRID_TNS_URL`` points anywhere that speaks that protocol.

Filter and instrument ids are TNS's numeric codes (see TNS "values" lists); the defaults are
ZTF's (g 110, r 111, i 112; instrument 196) and can be passed per report.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from astropy.time import Time
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.catalog.entries import designation
from astrid.errors import AstridError
from astrid.settings import Settings
from astrid.store.tables import Detection, ObjectMember, Observation, SkyObject

__all__ = ["TNS_FILTERS", "TnsError", "at_report", "at_report_for_object", "send_at_report"]

TNS_FILTERS = {"g": 110, "r": 111, "i": 112, "ztfg": 110, "ztfr": 111, "ztfi": 112}
AB_MAG = "1"  # TNS flux unit id of AB magnitudes


class TnsError(AstridError):
    """A TNS report cannot be built or was refused."""


def _when(mjd: float) -> str:
    return str(Time(mjd, format="mjd").to_value("iso", subfmt="date_hm")) + ":00"


def at_report(
    *,
    ra: float,
    dec: float,
    internal_name: str,
    reporter: str,
    photometry: list[dict[str, Any]],
    non_detection: dict[str, Any] | None = None,
    group_id: int | None = None,
    instrument_value: int = 196,
    remarks: str = "",
    position_error_arcsec: float = 0.5,
) -> dict[str, Any]:
    """One AT report in TNS's bulk-report format.

    ``photometry``: points ``{"mjd", "mag", "mag_err", "filter"}`` (the first is the
    discovery); ``non_detection``: ``{"mjd", "limit", "filter"}`` of the last epoch without
    the source, or None (then ``archiveid`` "0" with a remark, as TNS accepts).
    """
    points = [p for p in photometry if p.get("mjd") is not None and p.get("mag") is not None]
    if not points:
        raise TnsError(f"{internal_name}: no photometry with a magnitude: nothing to report")
    points.sort(key=lambda p: p["mjd"])

    def band(p: dict[str, Any]) -> int:
        return TNS_FILTERS.get(str(p.get("filter") or "r").lower(), 111)

    group = {
        str(i): {
            "obsdate": _when(p["mjd"]),
            "flux": f"{p['mag']:.3f}",
            "flux_error": f"{p['mag_err']:.3f}" if p.get("mag_err") is not None else "",
            "limiting_flux": "",
            "flux_units": AB_MAG,
            "filter_value": band(p),
            "instrument_value": instrument_value,
            "exptime": "",
            "observer": "Robot",
            "comments": "",
        }
        for i, p in enumerate(points)
    }
    if non_detection is not None:
        nd: dict[str, Any] = {
            "obsdate": _when(non_detection["mjd"]),
            "limiting_flux": f"{non_detection['limit']:.3f}",
            "flux_units": AB_MAG,
            "filter_value": band(non_detection),
            "instrument_value": instrument_value,
        }
    else:
        nd = {"archiveid": "0", "archival_remarks": "no earlier non-detection in AstrID"}
    report = {
        "ra": {"value": f"{ra:.6f}", "error": f"{position_error_arcsec}", "units": "arcsec"},
        "dec": {"value": f"{dec:.6f}", "error": f"{position_error_arcsec}", "units": "arcsec"},
        "reporter": reporter,
        "discovery_datetime": _when(points[0]["mjd"]),
        "at_type": "1",  # PSN (possible supernova) = TNS "AT type" 1
        "internal_name": internal_name,
        "remarks": remarks,
        "non_detection": nd,
        "photometry": {"photometry_group": group},
    }
    if group_id is not None:
        report["reporting_group_id"] = str(group_id)
        report["discovery_data_source_id"] = str(group_id)
    return {"at_report": {"0": report}}


def at_report_for_object(session: Session, object_id: int, settings: Settings) -> dict[str, Any]:
    """The AT report of a stored object: its detections as photometry."""
    obj = session.get(SkyObject, object_id)
    if obj is None:
        raise TnsError(f"object {object_id}: no such object")
    rows = session.execute(
        select(Detection, Observation.filter)
        .join(ObjectMember, ObjectMember.detection_id == Detection.id)
        .outerjoin(Observation, Observation.id == Detection.observation_id)
        .where(ObjectMember.object_id == object_id)
    ).all()
    photometry = [
        {
            "mjd": det.mjd,
            "mag": det.mag,
            "mag_err": 1.0857 / det.snr if det.snr and det.snr > 0 else None,
            "filter": band,
        }
        for det, band in rows
    ]
    return at_report(
        ra=obj.ra,
        dec=obj.dec,
        internal_name=designation(obj.ra, obj.dec).replace("AstrID ", "AstrID"),
        reporter=settings.tns_reporter,
        photometry=photometry,
        group_id=settings.tns_group_id,
    )


def send_at_report(settings: Settings, report: dict[str, Any]) -> dict[str, Any]:
    """POST ``report`` to ``ASTRID_TNS_URL``; returns TNS's JSON answer (``id_code`` 200)."""
    if not settings.tns_url:
        raise TnsError("no TNS endpoint configured (set ASTRID_TNS_URL)")
    if settings.tns_api_key is None:
        raise TnsError("no TNS bot API key configured (set ASTRID_TNS_API_KEY)")
    marker = json.dumps(
        {"tns_id": settings.tns_bot_id, "type": "bot", "name": settings.tns_bot_name},
        separators=(",", ":"),
    )
    try:
        response = httpx.post(
            settings.tns_url,
            data={
                "api_key": settings.tns_api_key.get_secret_value(),
                "data": json.dumps(report),
            },
            headers={"User-Agent": f"tns_marker{marker}"},
            timeout=30.0,
        )
    except httpx.HTTPError as exc:
        raise TnsError(f"TNS {settings.tns_url}: {type(exc).__name__}: {exc}") from exc
    try:
        answer: dict[str, Any] = response.json()
    except ValueError as exc:
        raise TnsError(f"TNS answered {response.status_code} without JSON") from exc
    if response.status_code != 200 or answer.get("id_code") != 200:
        raise TnsError(
            f"TNS refused the report: {answer.get('id_code')} {answer.get('id_message')}"
        )
    return answer
