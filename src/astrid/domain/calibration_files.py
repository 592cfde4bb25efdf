"""Reading and checking one master calibration file (the first half of registering it).

:func:`read_master` reads a master's image, its ``VARIANCE`` and ``MASK`` planes and its chip
from a FITS file (one science image, or the one ``hdu`` names of several: two-chip
``SCI,1``/``SCI,2`` files, a mosaic's CCDs); :func:`prepare_master` checks it against the
registration's kind, instrument and filter and converts it to the stored conventions
(:mod:`astrid.domain.calibration`'s docstring); :func:`chip_name` checks a ``chip`` input.
Every refusal is a :class:`CalibrationFieldError` naming the input at fault. Storing and
finding masters is :mod:`astrid.domain.calibration`.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from astrid.errors import AstridError
from astrid.science.fitsio import FitsImage, companion_hdus, read_image, science_hdus
from astrid.science.master_frames import CalibrationInputError

__all__ = [
    "ALL_CHIPS",
    "MAX_CHIP",
    "CalibrationChipsError",
    "CalibrationFieldError",
    "PreparedMaster",
    "chip_name",
    "master_fits",
    "prepare_master",
    "read_master",
    "same_name",
]

#: The ``hdu`` value (CLI ``--hdu all``, API ``hdu=all``) that registers every science image
#: of a multi-image master, one row per chip.
ALL_CHIPS = "all"
#: Longest chip name (the API's limit on ``hdu`` and ``chip``).
MAX_CHIP = 72
_CHIP = re.compile(r"([^,\x00-\x1f\x7f]+?)\s*(?:,\s*(\d+))?")


class CalibrationFieldError(CalibrationInputError):
    """A calibration frame is refused; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{field}: {message}", hint=hint)
        self.field = field


class CalibrationChipsError(CalibrationFieldError):
    """Registering every chip of a file (``hdu="all"``) is refused because of the chips in
    ``failures`` (chip, field, message), each named; nothing is stored. ``field`` and
    ``chip`` are the first failure's."""

    def __init__(self, failures: list[tuple[str, str, str]]) -> None:
        self.failures = failures
        chip, field, _ = failures[0]
        shown = "; ".join(f"chip {c}: {m}" for c, _, m in failures)
        super().__init__(
            field,
            f"{len(failures)} chip(s) refused, so none was registered: {shown}",
            hint="fix those chips and register the file again (all chips or none), or "
            "register the good chips one by one with --hdu NAME",
        )
        self.chip = chip


def same_name(a: str | None, b: str | None) -> bool:
    """Equal as names: case and surrounding spaces ignored, None as empty."""
    return str(a or "").strip().lower() == str(b or "").strip().lower()


def _extension(hdul: fits.HDUList, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if name not in hdul:
        return None
    data = hdul[name].data
    if data is None or data.shape != shape:
        raise CalibrationFieldError(
            "file", f"the {name} extension has shape {getattr(data, 'shape', None)}, not {shape}"
        )
    return np.asarray(data)


def _hdu_value(hdu: int | str | None) -> int | str | None:
    """An ``hdu`` input: an index (``4``, ``"4"``) or a name (``N4``, ``SCI,2``)."""
    if hdu is None or isinstance(hdu, int):
        return hdu
    text = str(hdu).strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text


def chip_name(value: str | None) -> str | None:
    """A ``chip`` input checked as an ``hdu`` name is: 1-72 printable characters, an
    EXTNAME (``N4``) or EXTNAME,EXTVER (``SCI,2``; spaces around the comma dropped); not
    ``all`` nor a bare number (an HDU index names no chip). None or blank stays None.

    Raises
    ------
    CalibrationFieldError
        Field ``chip``.
    """
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    match = _CHIP.fullmatch(text)
    if len(text) > MAX_CHIP or match is None:
        raise CalibrationFieldError(
            "chip",
            f"{text[:MAX_CHIP]!r} is not a chip name",
            hint="an EXTNAME or EXTNAME,EXTVER of at most 72 printable characters (N4, SCI,2)",
        )
    name, ver = match.group(1).strip(), match.group(2)
    if name.isdigit() or name.lower() == ALL_CHIPS:
        raise CalibrationFieldError(
            "chip",
            f"{text!r} names no chip: give the chip's name (N4, SCI,2), not an HDU index",
        )
    return name if ver is None else f"{name},{int(ver)}"


def _read_master(
    data: bytes, hdu: int | str | None
) -> tuple[FitsImage, np.ndarray | None, np.ndarray | None, str | None]:
    """The master's image, its VARIANCE and MASK planes (or None) and its chip: the name of
    the science image read when the file holds several (``SCI,2``, ``N4``), else None."""
    try:
        science = science_hdus(data)
    except AstridError as exc:
        raise CalibrationFieldError("file", f"not a readable FITS image: {exc}") from exc
    names = dict(science)
    if hdu is None and len(science) > 1:
        shown = ", ".join(f"{index} ({name})" for index, name in science)
        raise CalibrationFieldError(
            "hdu",
            f"the file holds {len(science)} science images (HDUs {shown}): say which one "
            "this master is",
            hint="give --hdu (API: hdu) with its index or name (SCI,2, N4), or --hdu all "
            "for every chip (one master each); the master is then applied to the "
            "observations of that chip only",
        )
    try:
        image = read_image(data, hdu, validate=False)
    except AstridError as exc:
        field = "file" if hdu is None else "hdu"
        raise CalibrationFieldError(field, f"not a readable FITS image: {exc}") from exc
    if image.hdu_index not in names:
        raise CalibrationFieldError(
            "hdu",
            f"HDU {hdu!r} is not one of the file's science images "
            f"({', '.join(name for _, name in science)})",
        )
    chip = names[image.hdu_index] if len(science) > 1 else None
    shape = image.data.shape
    if chip is None:
        with fits.open(io.BytesIO(data)) as hdul:
            var = _extension(hdul, "VARIANCE", shape)
            bad = _extension(hdul, "MASK", shape)
        return image, var, bad, None
    # the chip's own planes (VARIANCE,2 / N4_VARIANCE), as preprocess reads an image's
    planes = companion_hdus(data, image.hdu_index, ("VARIANCE", "MASK"))
    var = read_image(data, planes["VARIANCE"]).data if "VARIANCE" in planes else None
    bad = read_image(data, planes["MASK"]).data if "MASK" in planes else None
    return image, var, bad, chip


def master_fits(data: np.ndarray, header: fits.Header | None = None) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(data, header=header).writeto(buf)
    return buf.getvalue()


@dataclass
class PreparedMaster:
    """A checked master, ready to store."""

    pixels: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray
    header: fits.Header
    band: str | None
    exptime: float | None
    chip: str | None
    notes: list[str]


def prepare_master(
    image: FitsImage,
    var: np.ndarray | None,
    bad: np.ndarray | None,
    chip: str | None,
    *,
    kind: str,
    instrument: str,
    filter: str | None,
) -> PreparedMaster:
    """Check one master image (instrument, filter, units, flat's zeros) and convert it to
    the stored conventions (module docstring)."""
    header = image.header
    pixels = np.asarray(image.data, dtype=np.float64)
    if pixels.ndim != 2:
        raise CalibrationFieldError("file", f"the image has shape {pixels.shape}, not 2-D")
    mask = np.zeros(pixels.shape, bool) if bad is None else bad.astype(bool)
    file_instrument = header.get("INSTRUME")
    if file_instrument and not same_name(file_instrument, instrument):
        raise CalibrationFieldError(
            "instrument",
            f"the file says INSTRUME={str(file_instrument).strip()!r}, not {instrument!r}",
            hint="register it for the instrument that took it",
        )
    file_filter = header.get("FILTER") or header.get("BAND")
    notes: list[str] = []
    band: str | None = None
    if kind == "flat":
        band = (filter or "").strip() or (str(file_filter).strip() if file_filter else None)
        if not band:
            raise CalibrationFieldError(
                "filter", "a flat needs its filter (--filter or a FILTER keyword)"
            )
        if file_filter and not same_name(file_filter, band):
            raise CalibrationFieldError(
                "filter", f"the file says FILTER={str(file_filter).strip()!r}, not {band!r}"
            )
    elif filter:
        raise CalibrationFieldError(
            "filter", f"a {kind} is not per filter", hint="give --filter for flats only"
        )
    exptime: float | None = None
    variance = np.zeros(pixels.shape) if var is None else np.asarray(var, dtype=np.float64)
    if var is None:
        notes.append("no VARIANCE extension: the master is taken as noiseless")
    if kind == "dark":
        unit = str(header.get("BUNIT", "")).replace(" ", "").lower()
        t = header.get("EXPTIME", header.get("EXPOSURE"))
        if unit.endswith("/s"):
            exptime = float(t) if isinstance(t, int | float) and t > 0 else None
        elif isinstance(t, int | float) and not isinstance(t, bool) and float(t) > 0:
            exptime = float(t)
            pixels, variance = pixels / exptime, variance / exptime**2
            notes.append(f"dark divided by its EXPTIME {exptime:g} s (stored in ADU/s)")
        else:
            raise CalibrationFieldError(
                "file",
                "a master dark needs EXPTIME > 0 (or BUNIT 'adu/s' for a rate)",
                hint="darks are stored as a rate in ADU/s, bias removed",
            )
    if kind == "flat":
        usable = ~mask
        wrong = usable & (~np.isfinite(pixels) | (pixels <= 0))
        if wrong.any():
            raise CalibrationFieldError(
                "file",
                f"the flat has {int(wrong.sum())} zero, negative or non-finite pixel(s) "
                "outside its MASK",
                hint="a flat divides the image: mask those pixels in a MASK extension",
            )
        med = float(np.median(pixels[usable])) if usable.any() else float("nan")
        if not (math.isfinite(med) and med > 0):
            raise CalibrationFieldError("file", "the flat has no usable pixel")
        pixels, variance = pixels / med, variance / med**2
        notes.append(f"flat normalised by its median {med:.6g}")
    elif not np.isfinite(pixels[~mask]).all():
        raise CalibrationFieldError("file", f"the {kind} has non-finite pixels outside its MASK")
    return PreparedMaster(
        pixels, None if var is None else variance, mask, header, band, exptime, chip, notes
    )


def read_master(
    data: bytes, hdu: int | str | None
) -> tuple[FitsImage, np.ndarray | None, np.ndarray | None, str | None]:
    try:
        return _read_master(data, _hdu_value(hdu))
    except CalibrationFieldError:
        raise
    except (AstridError, OSError, ValueError, TypeError) as exc:
        raise CalibrationFieldError("file", f"not a readable FITS image: {exc}") from exc
