"""Stamps: the one place where AstrID cuts, stretches and renders small images.

Every stamp in AstrID — scanner PNGs, alert cutouts, the U-Net's training triplets, the API's
cutout endpoint — comes from this module, so all of them follow one convention.

**The stamp convention** (stated once, here):

* Pixel coordinates are 0-based with pixel *centres* on integers (numpy / astropy; FITS pixel
  ``p`` is ``p - 1`` here). ``x`` is the column, ``y`` the row.
* A stamp of side ``size`` is centred on the *nearest pixel* ``(xc, yc) = (floor(x + 0.5),
  floor(y + 0.5))``: it covers columns ``xc - size // 2 … xc - size // 2 + size - 1`` (rows
  alike), so the requested pixel lands on stamp index ``[size // 2, size // 2]`` for odd and
  even sizes. No resampling: stamp pixels are image pixels.
* Where the stamp runs off the image it keeps its size; those pixels are **NaN** and flagged
  in the stamp's ``outside`` mask (NaN pixels *inside* the image stay NaN but are not flagged).
* Row 0 of a stamp is the image's row 0; renderings put row 0 at the bottom (FITS
  orientation), which is north up, east left for a north-up image.

Display: :func:`display_limits` (IRAF zscale by default, ``astropy.visualization.ZScaleInterval``)
and :func:`normalize` (asinh by default, ``astropy.visualization.AsinhStretch``) map values to
[0, 1]; :func:`to_png` and :func:`triplet_png` (new | reference | difference with a crosshair
and, given a WCS, a north arrow) write 8-bit PNGs. An all-NaN or constant stamp renders as a
uniform image: a display must never be what crashes a review page.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS, Sip

from astrid.errors import AstridError

if TYPE_CHECKING:
    from astropy.visualization import BaseInterval, BaseStretch

__all__ = [
    "Cutout",
    "CutoutError",
    "CutoutOutsideError",
    "cutout",
    "display_limits",
    "normalize",
    "stamp",
    "stamp_origin",
    "to_png",
    "triplet_png",
]


class CutoutError(AstridError):
    """The cutout cannot be made or drawn (bad size or shape, no WCS for a sky position)."""


class CutoutOutsideError(CutoutError):
    """The requested position lies outside the image."""


@dataclass
class Cutout:
    """A stamp cut from an image (see the module docstring for the convention).

    Attributes
    ----------
    data : numpy.ndarray
        Shape (size, size); NaN where the stamp lies outside the image.
    outside : numpy.ndarray
        Bool, shape (size, size); True where the stamp lies outside the image.
    wcs : astropy.wcs.WCS or None
        WCS of the stamp (the image's, shifted), or None without an image WCS.
    position : tuple of float
        (x, y) of the requested position in stamp pixels.
    origin : tuple of int
        (x, y) in the image of the stamp's pixel [0, 0] (may be negative).
    overlap_fraction : float
        Fraction of stamp pixels that come from the image.
    """

    data: np.ndarray
    outside: np.ndarray
    wcs: WCS | None
    position: tuple[float, float]
    origin: tuple[int, int]
    overlap_fraction: float


def stamp_origin(x: float, y: float, size: int) -> tuple[int, int]:
    """(x0, y0) in image pixels of the stamp's pixel [0, 0] for a stamp centred near (x, y)."""
    return int(math.floor(x + 0.5)) - size // 2, int(math.floor(y + 0.5)) - size // 2


def stamp(
    image: np.ndarray, x: float, y: float, size: int, *, dtype: type = np.float32
) -> np.ndarray:
    """A ``size`` × ``size`` stamp of ``image`` centred on the pixel nearest (x, y).

    The fast path for many stamps (no WCS, no mask); NaN off the image.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image (ny, nx).
    x, y : float
        Column and row, 0-based pixel centres.
    size : int
        Stamp side in pixels (≥ 1).
    dtype : numpy dtype
        Dtype of the stamp (float32 by default).

    Returns
    -------
    numpy.ndarray
        Shape (size, size).
    """
    if size < 1:
        raise CutoutError(f"cutout size must be at least 1 pixel, got {size}")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise CutoutOutsideError(f"position ({x}, {y}) is not finite")
    x0, y0 = stamp_origin(x, y, size)
    out: np.ndarray = np.full((size, size), np.nan, dtype=dtype)
    ny, nx = image.shape
    xs, ys = max(x0, 0), max(y0, 0)
    xe, ye = min(x0 + size, nx), min(y0 + size, ny)
    if xs < xe and ys < ye:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = image[ys:ye, xs:xe]
    return out


def _stamp_wcs(wcs: WCS, origin: tuple[int, int], size: int) -> WCS:
    """The image WCS with its reference pixel moved into the stamp (as Cutout2D does)."""
    out = wcs.deepcopy()
    shift = np.array(origin, dtype=float)
    out.wcs.crpix -= shift
    out.array_shape = (size, size)
    if out.sip is not None:
        out.sip = Sip(out.sip.a, out.sip.b, out.sip.ap, out.sip.bp, out.sip.crpix - shift)
    return out


def cutout(
    data: np.ndarray,
    position: SkyCoord | tuple[float, float],
    size: int | u.Quantity,
    *,
    wcs: WCS | None = None,
    sky: bool | None = None,
) -> Cutout:
    """Cut a square stamp around a sky or pixel position.

    Parameters
    ----------
    data : numpy.ndarray
        Image (ny, nx).
    position : SkyCoord or tuple of float
        A SkyCoord, (ra, dec) in degrees (with ``wcs``), or (x, y) pixels (0-based).
    size : int or astropy.units.Quantity
        Side in pixels, or an angle (needs ``wcs``; rounded to whole pixels).
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the image.
    sky : bool, optional
        Whether a tuple ``position`` is (ra, dec); default: True when a WCS is given.

    Returns
    -------
    Cutout
        float32 data with the ``outside`` mask and the stamp's WCS.

    Raises
    ------
    CutoutOutsideError
        If the stamp does not overlap the image at all.
    CutoutError
        For a sky position or angular size without a WCS, a non-positive size, or a non-2-D
        image.
    """
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise CutoutError(f"image has shape {arr.shape}, not 2-D")
    is_sky = isinstance(position, SkyCoord) or (sky if sky is not None else wcs is not None)
    if is_sky and wcs is None:
        raise CutoutError(
            "a sky position needs the image's WCS", hint="pass wcs= or a pixel position"
        )
    if isinstance(size, u.Quantity):
        if wcs is None:
            raise CutoutError("an angular size needs the image's WCS", hint="pass wcs=")
        scale = float(np.mean(np.abs(wcs.proj_plane_pixel_scales()[0].to_value(u.deg))))
        npix = int(round(size.to_value(u.deg) / scale))
    else:
        npix = int(size)
    if npix < 1:
        raise CutoutError(f"cutout size must be at least 1 pixel, got {size}")
    if is_sky:
        assert wcs is not None
        coord = (
            position
            if isinstance(position, SkyCoord)
            else SkyCoord(position[0] * u.deg, position[1] * u.deg)
        )
        px, py = wcs.world_to_pixel(coord)
        pix = (float(px), float(py))
    else:
        pix = (float(position[0]), float(position[1]))  # type: ignore[index]
    if not all(np.isfinite(pix)):
        raise CutoutOutsideError(f"position {position} does not project onto the image")
    x0, y0 = stamp_origin(pix[0], pix[1], npix)
    ny, nx = arr.shape
    cols = (np.arange(x0, x0 + npix) >= 0) & (np.arange(x0, x0 + npix) < nx)
    rows = (np.arange(y0, y0 + npix) >= 0) & (np.arange(y0, y0 + npix) < ny)
    if not cols.any() or not rows.any():
        raise CutoutOutsideError(
            f"the {npix}x{npix} stamp at pixel ({pix[0]:.1f}, {pix[1]:.1f}) does not overlap "
            f"the {nx}x{ny} image",
            hint="check the position and the image's WCS",
        )
    outside = ~(rows[:, None] & cols[None, :])
    return Cutout(
        data=stamp(arr, pix[0], pix[1], npix),
        outside=outside,
        wcs=_stamp_wcs(wcs, (x0, y0), npix) if wcs is not None else None,
        position=(pix[0] - x0, pix[1] - y0),
        origin=(x0, y0),
        overlap_fraction=float((~outside).sum()) / float(npix * npix),
    )


_STRETCH_NAMES = ("asinh", "linear", "log", "sqrt")


def _stretch(name: str) -> BaseStretch:
    # astropy.visualization imports matplotlib (~0.7 s): loaded on first display, so that
    # cutting stamps (vetting, training sets) stays cheap
    from astropy.visualization import AsinhStretch, LinearStretch, LogStretch, SqrtStretch

    if name == "asinh":
        return AsinhStretch(a=0.1)
    return {"linear": LinearStretch, "sqrt": SqrtStretch, "log": LogStretch}[name]()


def display_limits(data: np.ndarray, interval: str | float = "zscale") -> tuple[float, float]:
    """Lower and upper display limits of the finite pixels.

    Parameters
    ----------
    data : numpy.ndarray
        Any shape.
    interval : {'zscale', 'minmax'} or float
        IRAF zscale, full range, or a central percentile (e.g. 99.5).

    Returns
    -------
    tuple of float
        (vmin, vmax); (0, 1) for an all-NaN array; equal values widened by ±0.5.
    """
    from astropy.visualization import MinMaxInterval, PercentileInterval, ZScaleInterval

    finite = np.asarray(data, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (0.0, 1.0)
    chooser: BaseInterval
    if interval == "zscale":
        chooser = ZScaleInterval()
    elif interval == "minmax":
        chooser = MinMaxInterval()
    elif isinstance(interval, int | float):
        chooser = PercentileInterval(float(interval))
    else:
        raise CutoutError(f"unknown interval {interval!r}", hint="zscale, minmax or a percentile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo, hi = chooser.get_limits(finite)
    if not hi > lo:
        lo, hi = float(lo) - 0.5, float(lo) + 0.5
    return float(lo), float(hi)


def normalize(
    data: np.ndarray,
    *,
    stretch: str = "asinh",
    interval: str | float = "zscale",
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map an array to [0, 1] for display.

    Parameters
    ----------
    data : numpy.ndarray
        Any shape.
    stretch : {'linear', 'sqrt', 'log', 'asinh'}
        Stretch applied after the interval (asinh with a = 0.1 by default).
    interval : {'zscale', 'minmax'} or float
        See :func:`display_limits`.
    limits : tuple of float, optional
        Explicit (vmin, vmax), overriding ``interval`` (e.g. to show several stamps alike).

    Returns
    -------
    numpy.ndarray
        float64 in [0, 1], same shape; NaN pixels become 0 (the lowest colour).
    """
    from astropy.visualization import ManualInterval

    if stretch not in _STRETCH_NAMES:
        raise CutoutError(f"unknown stretch {stretch!r}", hint=f"one of {list(_STRETCH_NAMES)}")
    arr = np.asarray(data, dtype=float)
    lo, hi = limits if limits is not None else display_limits(arr, interval)
    scaled = ManualInterval(lo, hi)(np.where(np.isfinite(arr), arr, lo), clip=True)
    out = _stretch(stretch)(scaled, clip=True)
    return np.asarray(np.nan_to_num(out, nan=0.0), dtype=float)


def _encode_png(grey: np.ndarray, cmap: str = "gray") -> bytes:
    """PNG bytes of a [0, 1] image whose row 0 is already the top row."""
    buffer = io.BytesIO()
    if cmap == "gray":
        from PIL import Image  # Pillow: a light import (matplotlib is ~0.5 s)

        Image.fromarray(np.round(grey * 255).astype(np.uint8), mode="L").save(buffer, "PNG")
    else:
        import matplotlib  # only for colour maps other than grey; slow to import
        import matplotlib.image  # a submodule that `import matplotlib` does not load

        rgba = matplotlib.colormaps[cmap](grey, bytes=True)
        matplotlib.image.imsave(buffer, rgba, format="png")
    return buffer.getvalue()


def to_png(
    data: np.ndarray,
    *,
    stretch: str = "asinh",
    interval: str | float = "zscale",
    limits: tuple[float, float] | None = None,
    cmap: str = "gray",
    scale: int = 1,
) -> bytes:
    """Render a 2-D array as a PNG, row 0 at the bottom (FITS orientation).

    Parameters
    ----------
    data : numpy.ndarray
        2-D array.
    stretch, interval, limits :
        See :func:`normalize` (zscale + asinh by default).
    cmap : str
        ``'gray'`` (8-bit grey, written with Pillow) or any matplotlib colour map (RGBA).
    scale : int
        Integer magnification (nearest neighbour), e.g. 4 for a 63-pixel alert stamp.

    Returns
    -------
    bytes
        PNG file contents.
    """
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise CutoutError(f"can only render 2-D arrays, got shape {arr.shape}")
    img = normalize(arr, stretch=stretch, interval=interval, limits=limits)
    if scale > 1:
        img = np.kron(img, np.ones((int(scale), int(scale))))
    return _encode_png(img[::-1], cmap)


def _north_angle(wcs: WCS, x: float, y: float) -> float | None:
    """Angle (radians, from +x counter-clockwise) of north at pixel (x, y), or None."""
    try:
        sky = wcs.pixel_to_world(x, y)
        north = sky.directional_offset_by(0.0 * u.deg, 1.0 * u.arcsec)
        nx, ny = wcs.world_to_pixel(north)
    except Exception:  # a WCS that cannot say where north is draws no arrow
        return None
    dx, dy = float(nx) - x, float(ny) - y
    if not (math.isfinite(dx) and math.isfinite(dy)) or dx == dy == 0:
        return None
    return math.atan2(dy, dx)


def _draw_crosshairs(canvas: np.ndarray, panels: list[tuple[int, int]], scale: int) -> None:
    """Draw ticks around the centre pixel of each panel, leaving the centre clear (in place).

    ``canvas`` is in display orientation (row 0 at the top), values in [0, 1]; ``panels``
    gives (x offset in canvas pixels, side in stamp pixels) of each square panel.
    """
    h = canvas.shape[0]
    for x_off, side in panels:
        c = side // 2 * scale + scale // 2  # centre of the stamp's centre pixel
        cx, cy = x_off + c, h - 1 - c  # display rows are flipped
        lo = max(3 * scale, side * scale // 8)
        hi = lo + max(2 * scale, side * scale // 8)
        canvas[cy, max(cx - hi, 0) : cx - lo + 1] = 1.0
        canvas[cy, cx + lo : cx + hi + 1] = 1.0
        canvas[max(cy - hi, 0) : cy - lo + 1, cx] = 1.0
        canvas[cy + lo : cy + hi + 1, cx] = 1.0


def _draw_north(canvas: np.ndarray, x_off: int, side: int, north: float) -> None:
    """Draw an arrow pointing north (angle ``north`` from +x) in a panel's lower-left corner."""
    h, w = canvas.shape
    length = max(4.0, side / 5.0)
    x0, y0 = x_off + 2.0 + length * 0.6, h - 3.0 - length * 0.6
    ux, uy = math.cos(north), -math.sin(north)  # display y grows downwards
    strokes = [(x0, y0, ux, uy, length)]
    tip = (x0 + ux * length, y0 + uy * length)
    for turn in (2.6, -2.6):  # arrow head: two barbs at ±150 degrees from the shaft
        strokes.append(
            (tip[0], tip[1], math.cos(north + turn), -math.sin(north + turn), length / 3)
        )
    for sx, sy, dx, dy, n in strokes:
        for t in np.linspace(0.0, n, int(n * 3) + 1):
            px, py = int(round(sx + dx * t)), int(round(sy + dy * t))
            if 0 <= py < h and 0 <= px < w:
                canvas[py, px] = 1.0


def triplet_png(
    stamps: Sequence[np.ndarray],
    *,
    stretch: str = "asinh",
    common_limits: Sequence[bool] | None = None,
    scale: int = 2,
    gap: int = 2,
    crosshair: bool = True,
    wcs: WCS | None = None,
    limits: Sequence[tuple[float, float]] | None = None,
) -> bytes:
    """Side-by-side PNG of stamps (new | reference | difference), north up.

    Parameters
    ----------
    stamps : sequence of numpy.ndarray
        2-D stamps of equal height (usually three, cut with :func:`stamp`).
    stretch : str
        See :func:`normalize`.
    common_limits : sequence of bool, optional
        Stamps flagged True share the zscale limits of the first flagged one (default: the
        first two, so new and reference look alike; the difference gets its own).
    scale : int
        Magnification (nearest neighbour).
    gap : int
        Blank pixels between stamps (before magnification).
    crosshair : bool
        Draw ticks around the centre pixel of each stamp (they leave the centre clear).
    wcs : astropy.wcs.WCS, optional
        WCS of the first stamp; when given, an arrow in its lower-left corner points north.
    limits : sequence of tuple of float, optional
        ``display_limits(stamp)`` of each stamp when the caller has them already (zscale is
        most of a stamp's rendering time); the picture is the same as without them.

    Returns
    -------
    bytes
        8-bit grey PNG.
    """
    if not stamps:
        raise CutoutError("no stamps to draw")
    arrays = [np.asarray(s) for s in stamps]
    if any(a.ndim != 2 for a in arrays):
        raise CutoutError(f"stamps must be 2-D, got shapes {[a.shape for a in arrays]}")
    heights = {a.shape[0] for a in arrays}
    if len(heights) != 1:
        raise CutoutError(f"stamps have different heights {sorted(heights)}")
    flags = (
        list(common_limits) if common_limits is not None else [i < 2 for i in range(len(arrays))]
    )
    if limits is not None and len(limits) != len(arrays):
        raise CutoutError(f"{len(limits)} display limits for {len(arrays)} stamps")
    own = list(limits) if limits is not None else [None] * len(arrays)
    shared = next(
        (
            lim if lim is not None else display_limits(s)
            for s, f, lim in zip(arrays, flags, own, strict=False)
            if f
        ),
        None,
    )
    pieces: list[np.ndarray] = []
    offsets: list[tuple[int, int]] = []
    x = 0
    padded = flags + [False] * (len(arrays) - len(flags))
    for s, f, lim in zip(arrays, padded, own, strict=True):
        pieces.append(normalize(s, stretch=stretch, limits=shared if f else lim))
        offsets.append((x * scale, s.shape[1]))
        pieces.append(np.zeros((s.shape[0], gap)))
        x += s.shape[1] + gap
    canvas = np.hstack(pieces[:-1])
    if scale > 1:
        canvas = np.kron(canvas, np.ones((int(scale), int(scale))))
    canvas = np.ascontiguousarray(canvas[::-1])
    if crosshair:
        _draw_crosshairs(canvas, offsets, scale)
    centre = float(arrays[0].shape[1] // 2), float(arrays[0].shape[0] // 2)
    north = _north_angle(wcs, *centre) if wcs is not None else None
    if north is not None:
        _draw_north(canvas, offsets[0][0], offsets[0][1] * scale, north)
    return _encode_png(canvas)
