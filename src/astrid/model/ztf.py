"""ZTF alert packets as model input: reading, CCD-edge padding, NaN policy, the triplet.

Every alert of a batch ends up either scored or with an explicit reason, never aborting
the batch:

* **Stamps clipped by a CCD edge.** ZTF cuts 63x63 stamps centred on the candidate and
  sends them clipped where the stamp crosses the edge of the readout quadrant (e.g. 63x42).
  :func:`unclip_stamp` restores 63x63, keeping the candidate at pixel (31, 31): the
  candidate's position on the quadrant (``xpos``, ``ypos``; 1-based FITS pixels on a
  3072x3080 quadrant) tells which side was cut; the missing side is filled with NaN, which
  normalisation turns into 0 = the normalised sky (the fill convention of
  :mod:`astrid.model.stamps`). Without positions the padding goes after the data and the
  problem says so.
* **Heavily masked stamps.** A stamp more than half NaN is scored (NaN as sky) with a
  problem note; one with less than :data:`~astrid.model.stamps.MIN_VALID_FRACTION` valid
  pixels (all-NaN included) gets no score and the reason.
* **Broken cutouts** (missing, not FITS, not 2-D): no score, the reason in ``problems``.

A file that is not Avro at all is an :class:`AlertReadError` for that file;
:func:`iter_ztf_alerts` can collect such errors instead of raising, so the other files of a
folder are still read.
"""

from __future__ import annotations

import gzip
import io
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from astrid.errors import AstridError
from astrid.model.stamps import (
    MIN_VALID_FRACTION,
    InvalidStampError,
    fit_stamp,
    nan_fraction,
    normalise_stamp,
)

__all__ = [
    "ZTF_QUADRANT_SHAPE",
    "ZTF_STAMP_SIZE",
    "AlertReadError",
    "ZtfAlert",
    "alert_triplet",
    "iter_ztf_alerts",
    "prepare_alert",
    "read_ztf_alert_file",
    "unclip_stamp",
]

#: Side of a ZTF alert stamp, in pixels (candidate at index 31).
ZTF_STAMP_SIZE = 63
#: ``(ny, nx)`` of a ZTF readout quadrant, in pixels (xpos/ypos are 1-based on it).
ZTF_QUADRANT_SHAPE = (3080, 3072)

_STAMPS = ("science", "template", "difference")
_CUTOUT_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")


class AlertReadError(AstridError):
    """A ZTF alert file that cannot be read (missing, not Avro, not an alert record)."""


@dataclass(frozen=True)
class ZtfAlert:
    """The parts of a ZTF alert packet that AstrID scores, trains on and reports.

    Attributes
    ----------
    object_id : str
        ZTF object name (``objectId``).
    candid : int
        Candidate id.
    ra, dec : float
        Position in degrees (ICRS).
    drb, rb : float or None
        ZTF's deep real-bogus and random-forest scores (model scores, not truth).
    isdiffpos : bool
        True when the candidate is positive in science minus template.
    science, template, difference : numpy.ndarray or None
        The cutouts as sent (``float64``, usually 63x63, smaller where clipped by a CCD
        edge; NaN where ZTF masked pixels); None when unreadable (reason in ``problems``).
    source : str
        File the alert came from.
    candidate : dict
        The other scalar fields of the candidate record (``jd``, ``fid``, ``xpos``,
        ``ypos``, ``ssdistnr``, ``magpsf``, ...).
    problems : tuple of str
        Reading problems (a broken cutout).
    """

    object_id: str
    candid: int
    ra: float
    dec: float
    drb: float | None
    rb: float | None
    isdiffpos: bool
    science: np.ndarray | None
    template: np.ndarray | None
    difference: np.ndarray | None
    source: str
    candidate: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def unclip_stamp(
    stamp: np.ndarray,
    xpos: float | None = None,
    ypos: float | None = None,
    size: int = ZTF_STAMP_SIZE,
) -> np.ndarray:
    """Pad a stamp clipped by a CCD edge back to ``size`` x ``size`` with NaN.

    Parameters
    ----------
    stamp : numpy.ndarray
        Shape ``(h, w)`` with ``h, w <= size``.
    xpos, ypos : float, optional
        Candidate position on the quadrant, 1-based FITS pixels. A coordinate within
        ``size // 2`` pixels of the quadrant's start means that side was clipped; otherwise
        the far side was. Unknown: the padding goes after the data.
    size : int
        Full stamp side.

    Returns
    -------
    numpy.ndarray
        ``float64``, shape ``(size, size)``; the candidate at ``(size // 2, size // 2)``.
    """
    arr = np.asarray(stamp, dtype=np.float64)
    h, w = arr.shape
    half = size // 2
    pads = []
    for n, pos in ((h, ypos), (w, xpos)):
        missing = max(size - n, 0)
        at_start = pos is not None and float(pos) - 1.0 < half
        pads.append((missing, 0) if at_start else (0, missing))
    return np.pad(arr, pads, mode="constant", constant_values=np.nan)


def prepare_alert(alert: ZtfAlert, size: int = 64) -> tuple[np.ndarray | None, list[str]]:
    """The model input of an alert and the problems met on the way.

    Returns
    -------
    triplet : numpy.ndarray or None
        ``float32`` ``(3, size, size)`` (science, template, difference; normalised), or
        None when the alert cannot be scored (the reason is then in ``problems``).
    problems : list of str
        One line per problem (clipping, heavy masking, broken cutouts).

    Notes
    -----
    ZTF's difference cutout already shows the candidate positive (it is template minus
    science for ``isdiffpos = 'f'``), so no sign flip is applied.
    """
    problems = list(alert.problems)
    stamps = [getattr(alert, name) for name in _STAMPS]
    if any(s is None for s in stamps):
        return None, problems or ["a cutout is missing: not scored"]
    shapes = {np.shape(s) for s in stamps}
    clipped = sorted({f"{s[0]}x{s[1]}" for s in shapes if s != (ZTF_STAMP_SIZE,) * 2})
    xpos, ypos = alert.candidate.get("xpos"), alert.candidate.get("ypos")
    channels = []
    for name, stamp in zip(_STAMPS, stamps, strict=True):
        arr = np.asarray(stamp, dtype=np.float64)
        if arr.ndim != 2 or arr.size == 0:
            return None, [*problems, f"{name} stamp has shape {arr.shape}: not scored"]
        if max(arr.shape) > ZTF_STAMP_SIZE and arr.shape[0] != arr.shape[1]:
            return None, [*problems, f"{name} stamp is {arr.shape[0]}x{arr.shape[1]}: not scored"]
        frac = nan_fraction(arr)
        if frac > 1.0 - MIN_VALID_FRACTION:
            return None, [*problems, f"{name} stamp is {100 * frac:.0f}% NaN: not scored"]
        if frac > 0.5:
            problems.append(f"{name} stamp is {100 * frac:.0f}% NaN: NaN pixels scored as sky")
        if arr.shape[0] != arr.shape[1] or arr.shape[0] < ZTF_STAMP_SIZE:
            arr = unclip_stamp(arr, xpos, ypos)
        channels.append(normalise_stamp(arr, name=f"{name} stamp", max_nan_fraction=1.0))
    if clipped:
        where = "" if xpos is not None and ypos is not None else " (edge side unknown)"
        problems.append(
            f"stamps clipped to {', '.join(clipped)} by a CCD edge: padded as sky{where}"
        )
    return fit_stamp(np.stack(channels), size).astype(np.float32), problems


def alert_triplet(alert: ZtfAlert, size: int = 64) -> np.ndarray:
    """The model input ``(3, size, size)`` of an alert (see :func:`prepare_alert`).

    Raises
    ------
    InvalidStampError
        The alert cannot be scored (the message gives the reason).
    """
    triplet, problems = prepare_alert(alert, size)
    if triplet is None:
        raise InvalidStampError(f"alert {alert.candid}: {'; '.join(problems)}")
    return triplet


def _stamp_from_cutout(cutout: dict | None, what: str) -> tuple[np.ndarray | None, str | None]:
    if not cutout or not cutout.get("stampData"):
        return None, f"{what} cutout is missing"
    data = bytes(cutout["stampData"])
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(io.BytesIO(data)) as hdul:
                image = np.asarray(hdul[0].data, dtype=np.float64)
    except Exception as exc:  # gzip/astropy raise many unrelated types on garbage
        return None, f"{what} cutout is not a readable FITS image ({type(exc).__name__})"
    if image.ndim != 2:
        return None, f"{what} cutout has shape {image.shape}, not 2-D"
    return image, None


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def read_ztf_alert_file(path: str | Path) -> list[ZtfAlert]:
    """Read every alert packet in one ZTF Avro file (schema 3.x or Fink's 4.x).

    A broken cutout does not raise: the alert comes back with that stamp None and the
    reason in ``problems``.

    Raises
    ------
    AlertReadError
        If the file is missing, not Avro, or a record is not a ZTF alert.
    """
    path = Path(path)
    if not path.is_file():
        raise AlertReadError(f"{path}: no such alert file", hint="pass .avro files or folders")
    with path.open("rb") as handle:
        return _read_alert_stream(handle, str(path))


def _read_alert_stream(handle: IO[bytes], source: str) -> list[ZtfAlert]:
    """The alert packets of one Avro stream (a file, or a member of a tar archive)."""
    import fastavro  # optional dependency of the alert path

    try:
        records = [r for r in fastavro.reader(handle) if isinstance(r, dict)]
    except Exception as exc:  # fastavro raises several unrelated types on bad input
        raise AlertReadError(
            f"{source}: not a readable Avro alert file ({exc})",
            hint="ZTF alerts are Avro files, one or more packets each",
        ) from exc
    alerts = []
    for rec in records:
        cand = rec.get("candidate") or {}
        if rec.get("candid") is None or cand.get("ra") is None or cand.get("dec") is None:
            raise AlertReadError(f"{source}: record is not a ZTF alert (no candidate/candid)")
        images, problems = {}, []
        for what, key in zip(_STAMPS, _CUTOUT_FIELDS, strict=True):
            images[what], problem = _stamp_from_cutout(rec.get(key), what)
            if problem:
                problems.append(problem)
        alerts.append(
            ZtfAlert(
                object_id=str(rec.get("objectId")),
                candid=int(rec["candid"]),
                ra=float(cand["ra"]),
                dec=float(cand["dec"]),
                drb=_optional_float(cand.get("drb")),
                rb=_optional_float(cand.get("rb")),
                isdiffpos=str(cand.get("isdiffpos", "t")).lower() in {"t", "1", "true"},
                science=images["science"],
                template=images["template"],
                difference=images["difference"],
                source=source,
                candidate={
                    k: v for k, v in cand.items() if v is None or isinstance(v, (str, int, float))
                },
                problems=tuple(problems),
            )
        )
    return alerts


def _is_tar(path: Path) -> bool:
    """A tar archive (plain or compressed), by name or by content."""
    name = path.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return True
    if name.endswith(".avro"):
        return False
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _iter_tar_alerts(path: Path, errors: list[AlertReadError] | None) -> Iterator[ZtfAlert]:
    """The alerts of every ``*.avro`` member of a tar archive, read as a stream (ZTF's
    nightly public archives, ``ztf_public_YYYYMMDD.tar.gz``, hold one packet per member).
    A truncated archive keeps what was read before the break; the break is named."""
    import tarfile

    members = [0]
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                if not (member.isfile() and member.name.lower().endswith(".avro")):
                    continue
                members[0] += 1
                handle = archive.extractfile(member)
                if handle is not None:
                    source = f"{path}:{member.name}"
                    yield from _or_report(partial(_read_alert_stream, handle, source), errors)
    except (tarfile.TarError, OSError, EOFError) as exc:
        what = (
            "not a readable tar archive"
            if not members[0]
            else f"the archive is truncated or corrupt after {members[0]} members"
        )
        hint = "pass .avro files, folders of them, or a tar archive of them"
        _report(AlertReadError(f"{path}: {what} ({exc})", hint=hint), errors)
        return
    if not members[0]:
        _report(AlertReadError(f"{path}: the archive holds no .avro files"), errors)


def _report(exc: AlertReadError, errors: list[AlertReadError] | None) -> None:
    """Raise ``exc``, or keep it in ``errors`` when the caller collects them."""
    if errors is None:
        raise exc
    errors.append(exc)


def _or_report(
    read: Callable[[], list[ZtfAlert]], errors: list[AlertReadError] | None
) -> list[ZtfAlert]:
    """The alerts ``read()`` returns; none, with the error kept (or raised), if it fails."""
    try:
        return read()
    except AlertReadError as exc:
        _report(exc, errors)
        return []


def iter_ztf_alerts(
    paths: Iterable[str | Path], errors: list[AlertReadError] | None = None
) -> Iterator[ZtfAlert]:
    """Yield the alerts of files, of ``*.avro`` files in folders (recursively, sorted) and
    of the ``*.avro`` members of tar archives (``.tar``, ``.tar.gz``, ...; in archive order).

    Parameters
    ----------
    paths : iterable of path
        Files and folders.
    errors : list, optional
        When given, an unreadable file's :class:`AlertReadError` is appended here and the
        other files are still read; otherwise it is raised.
    """
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*.avro") if f.is_file())
            if not files:
                _report(AlertReadError(f"{p}: folder holds no .avro files"), errors)
        elif p.is_file() and _is_tar(p):
            yield from _iter_tar_alerts(p, errors)
            continue
        else:
            files = [p]
        for f in files:
            yield from _or_report(partial(read_ztf_alert_file, f), errors)
