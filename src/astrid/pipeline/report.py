"""A self-contained HTML report of what the pipeline found.

:func:`write_report` writes one HTML file (images embedded, no network needed to view it):

* the observations by status and the counts of candidates and detections;
* the time spent per stage;
* the detection limits of each difference (50 % / 90 % limiting magnitudes from fake point
  sources injected into its own pixels, the reference version it used) and a plot of their
  completeness curves;
* a completeness plot when a truth table of injected sources is given (fraction recovered
  against the ideal ZOGY S/N, found as a detection and scored real);
* a gallery of the most confident pipeline detections: new | reference | difference
  cutouts (the PNG blobs the detect stage stored), with position, S/N, magnitude and
  confidence, marked "injected" when they match the truth;
* the highest-scored alert detections, when there are any.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from sqlalchemy import func, select

from astrid.runtime import Runtime
from astrid.store.sky_index import angular_separation_deg
from astrid.store.tables import Candidate, Detection, DetectionLimit, Difference, Observation

__all__ = ["completeness_curve", "completeness_png", "limits_png", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f2f2f2}.gallery{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ccc;padding:6px;font-size:12px;width:300px}
.card img{width:100%;image-rendering:pixelated}.inj{color:#070;font-weight:bold}
.bog{color:#a00}
"""


def completeness_curve(
    snr: np.ndarray, found: np.ndarray, edges: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fraction of injected sources recovered per bin of ideal S/N.

    Parameters
    ----------
    snr : numpy.ndarray
        Ideal S/N of each injected source, shape (n,).
    found : numpy.ndarray of bool
        Whether each was recovered, shape (n,).
    edges : numpy.ndarray, optional
        Bin edges in S/N (default: 0, 2, 4, ..., 12, 16, 24, 48, inf).

    Returns
    -------
    centres, fraction, counts : numpy.ndarray
        Bin centres (S/N), recovered fraction (NaN for empty bins) and counts per bin.
    """
    edges = np.array([0, 2, 4, 6, 8, 10, 12, 16, 24, 48, np.inf]) if edges is None else edges
    snr = np.asarray(snr, float)
    found = np.asarray(found, bool)
    idx = np.digitize(snr, edges) - 1
    n = len(edges) - 1
    counts = np.bincount(idx[(idx >= 0) & (idx < n)], minlength=n)[:n]
    hits = np.bincount(idx[(idx >= 0) & (idx < n) & found[: len(idx)]], minlength=n)[:n]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    upper = np.where(np.isfinite(edges[1:]), edges[1:], edges[:-1] * 1.5)
    return 0.5 * (edges[:-1] + upper), frac, counts


def _figure() -> tuple[Any, Any]:
    """A 6 × 3.6 in figure (100 dpi) and its axes; matplotlib (Agg backend) is imported
    here: slow (~0.5 s), and only the report draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 3.6), dpi=100)


def _png(fig: Any) -> bytes:
    """The figure (its axes gridded) as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    for ax in fig.axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def completeness_png(truth: Table, threshold: float = 0.5) -> bytes:
    """PNG of the completeness curves (found as detection; scored real) vs ideal S/N."""
    snr = np.asarray(truth["ideal_snr"], float)
    found = np.asarray(truth["recovered"], bool)
    conf = np.asarray(truth["confidence"], float) if "confidence" in truth.colnames else None
    fig, ax = _figure()
    x, frac, counts = completeness_curve(snr, found)
    ax.plot(x, frac, "o-", label='found (detection within 1.5")')
    if conf is not None:
        real = found & (np.nan_to_num(conf, nan=-1) >= threshold)
        _, frac_r, _ = completeness_curve(snr, real)
        ax.plot(x, frac_r, "s--", label=f"scored real (P ≥ {threshold})")
    for xi, n in zip(x, counts, strict=True):
        if n:
            ax.annotate(str(n), (xi, 0.02), ha="center", fontsize=7, color="grey")
    ax.axvline(5.0, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("ideal S/N of the injected transient (ZOGY limit)")
    ax.set_ylabel("fraction recovered")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def limits_png(curves: list[tuple[str, list[Mapping[str, Any]]]]) -> bytes:
    """PNG of completeness against magnitude, one line per difference.

    Parameters
    ----------
    curves : list of (label, curve)
        ``curve``: the stored bins ``{"mag", "completeness", "n"}``, bright to faint.
    """
    fig, ax = _figure()
    for label, curve in curves:
        ax.plot([b["mag"] for b in curve], [b["completeness"] for b in curve], "o-", ms=3,
                label=label)  # fmt: skip
    ax.axhline(0.5, color="#999", lw=0.8, ls=":")
    ax.axhline(0.9, color="#999", lw=0.8, ls=":")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("magnitude of the injected fake point source")
    ax.set_ylabel("fraction recovered")
    if len(curves) <= 12:
        ax.legend(loc="lower left", fontsize=7)
    return _png(fig)


def _drb(extra: Mapping[str, Any] | None) -> float | None:
    extra = extra or {}
    value = extra.get("drb", (extra.get("candidate") or {}).get("drb"))
    return None if value is None else float(value)


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec) if isinstance(v, (int, float)) else html.escape(str(v))


def write_report(
    runtime: Runtime,
    path: str | Path,
    *,
    title: str = "AstrID report",
    truth: Table | None = None,
    stage_seconds: Mapping[str, float] | None = None,
    max_gallery: int = 36,
    threshold: float = 0.5,
) -> Path:
    """Write the HTML report of the database's current content to ``path``.

    Parameters
    ----------
    runtime : Runtime
        Database and blob store.
    path : str or pathlib.Path
        Output file (its folder is created).
    title : str
        Page title.
    truth : astropy.table.Table, optional
        Injected sources with ``ra``, ``dec``, ``file``, ``ideal_snr``, ``recovered`` and
        optionally ``confidence``: adds the completeness plot and marks matching detections.
    stage_seconds : mapping, optional
        Time per stage to show.
    max_gallery : int
        Most detections shown in the gallery.
    threshold : float
        Confidence counted as "real".

    Returns
    -------
    pathlib.Path
        The file written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}</p>",
    ]
    with runtime.require_migrated().session() as session:
        by_status = dict(
            session.execute(
                select(Observation.status, func.count()).group_by(Observation.status)
            ).all()
        )
        n_cand = session.scalar(select(func.count()).select_from(Candidate)) or 0
        by_source = dict(
            session.execute(select(Detection.source, func.count()).group_by(Detection.source)).all()
        )
        n_real = (
            session.scalar(
                select(func.count())
                .select_from(Detection)
                .where(Detection.source == "pipeline", Detection.confidence >= threshold)
            )
            or 0
        )
        gallery = session.execute(
            select(Detection, Observation.filename)
            .join(Observation, Detection.observation_id == Observation.id)
            .where(Detection.source == "pipeline")
            .order_by(Detection.confidence.desc().nulls_last(), Detection.snr.desc())
            .limit(max_gallery)
        ).all()
        limits = session.execute(
            select(DetectionLimit, Difference.reference_version, Observation.filename)
            .join(Difference, Difference.id == DetectionLimit.difference_id)
            .join(Observation, Observation.id == DetectionLimit.observation_id)
            .order_by(DetectionLimit.observation_id, DetectionLimit.id)
        ).all()
        alerts = session.scalars(
            select(Detection)
            .where(Detection.source == "alert")
            .order_by(Detection.confidence.desc().nulls_last())
            .limit(15)
        ).all()
    parts.append(
        "<h2>Summary</h2><table><tr><th>observations by status</th><td>"
        + ", ".join(
            f"{getattr(k, 'value', k)}: {v}"
            for k, v in sorted(by_status.items(), key=lambda kv: str(kv[0]))
        )
        + f"</td></tr><tr><th>candidates</th><td>{n_cand}</td></tr>"
        f"<tr><th>pipeline detections</th><td>{by_source.get('pipeline', 0)} "
        f"({n_real} with P(real) ≥ {threshold})</td></tr>"
        f"<tr><th>alert detections</th><td>{by_source.get('alert', 0)}</td></tr>"
        "</table>"
    )
    if stage_seconds:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.2f}</td></tr>" for k, v in stage_seconds.items()
        )
        parts.append(
            f"<h2>Time per stage</h2><table><tr><th>stage</th><th>seconds</th></tr>{rows}</table>"
        )
    if limits:
        rows = "".join(
            f"<tr><td>{html.escape(name or '')}</td><td>{lim.difference_id}</td>"
            f"<td>{_fmt(version, 'd')}</td><td>{_fmt(lim.m50)}</td><td>{_fmt(lim.m90)}</td>"
            f"<td>{lim.n_recovered} / {lim.n_injected}</td></tr>"
            for lim, version, name in limits
        )
        curves = [(name or str(lim.difference_id), lim.curve) for lim, _, name in limits]
        parts.append(
            "<h2>Detection limits per difference</h2><p>Fake point sources injected into each "
            "difference's own significance map, away from real sources, and recovered by the "
            "same detection.</p><table><tr><th>observation</th><th>difference</th>"
            "<th>reference version</th><th>50 % mag</th><th>90 % mag</th>"
            f"<th>recovered</th></tr>{rows}</table>" + _img(limits_png(curves), "limits")
        )
    tr = None
    if truth is not None and len(truth):
        found = np.asarray(truth["recovered"], bool)
        parts.append(
            f"<h2>Completeness</h2><p>{int(found.sum())} of {len(truth)} injected transients "
            f"found as detections.</p>" + _img(completeness_png(truth, threshold), "completeness")
        )
        tr = truth
    parts.append(
        f"<h2>Most confident detections</h2><p>new | reference | difference, "
        f"north up; {len(gallery)} shown.</p><div class='gallery'>"
    )
    for det, filename in gallery:
        tag = ""
        if tr is not None:
            sel = np.asarray(tr["file"]) == filename
            if sel.any():
                sep = angular_separation_deg(
                    np.asarray(tr["ra"][sel], float),
                    np.asarray(tr["dec"][sel], float),
                    det.ra,
                    det.dec,
                )
                tag = (
                    "<span class='inj'>injected</span>"
                    if float(np.min(sep)) * 3600 <= 1.5
                    else "<span class='bog'>not injected</span>"
                )
        png = (det.cutout_keys or {}).get("png")
        img = _img(runtime.blobs.get(png), f"detection {det.id}") if png else "(no cutout)"
        parts.append(
            f"<div class='card'>{img}<br>#{det.id} {html.escape(filename or '')} {tag}<br>"
            f"RA {det.ra:.5f} Dec {det.dec:+.5f}<br>S/N {_fmt(det.snr, '.1f')} · "
            f"mag {_fmt(det.mag)} · P(real) {_fmt(det.confidence)}<br>"
            f"model {html.escape(det.model_version or '')}</div>"
        )
    parts.append("</div>")
    if alerts:
        rows = "".join(
            f"<tr><td>{html.escape(str((a.extra or {}).get('objectId', '')))}</td>"
            f"<td>{html.escape(a.external_id or '')}</td><td>{a.ra:.5f}</td><td>{a.dec:+.5f}</td>"
            f"<td>{_fmt(a.mag)}</td><td>{_fmt(a.confidence)}</td>"
            f"<td>{_fmt(_drb(a.extra))}</td></tr>"
            for a in alerts
        )
        parts.append(
            "<h2>Real ZTF alerts, highest AstrID score</h2><table><tr><th>object</th>"
            "<th>candid</th><th>RA</th><th>Dec</th><th>mag</th><th>P(real)</th>"
            f"<th>ZTF drb</th></tr>{rows}</table>"
        )
    parts.append("</body></html>")
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
