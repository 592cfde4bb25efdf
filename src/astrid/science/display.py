"""Cutouts and display stretches: what a scanner, an alert or a notebook shows of an image.

* :func:`cutout` — a square stamp at a sky (or pixel) position with ``astropy``'s
  :class:`~astropy.nddata.Cutout2D`; where the stamp runs off the image it is padded with NaN
  and the stamp keeps its size, so stamps of different images line up pixel for pixel.
* :func:`normalize` — interval (zscale, min-max or percentile) and stretch (linear, sqrt, log,
  asinh) to values in [0, 1] with ``astropy.visualization``.
* :func:`to_png` — an 8-bit PNG (bytes) of an array, NaN drawn in the lowest colour.

An all-NaN or constant array is displayed as a uniform image rather than raising: a display
must never be the thing that crashes a review page.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.nddata import Cutout2D, NoOverlapError
from astropy.visualization import (
    AsinhStretch,
    BaseInterval,
    BaseStretch,
    LinearStretch,
    LogStretch,
    ManualInterval,
    MinMaxInterval,
    PercentileInterval,
    SqrtStretch,
    ZScaleInterval,
)
from astropy.wcs import WCS

from astrid.errors import AstridError

__all__ = [
    "Cutout",
    "CutoutError",
    "CutoutOutsideError",
    "cutout",
    "display_limits",
    "normalize",
    "to_png",
    "triplet_png",
]


class CutoutError(AstridError):
    """The cutout cannot be made (bad size, no WCS for a sky position)."""


class CutoutOutsideError(CutoutError):
    """The requested position lies outside the image."""


@dataclass
class Cutout:
    """A stamp cut from an image.

    Attributes
    ----------
    data : numpy.ndarray
        Shape (size, size), float32; NaN where the stamp lies outside the image.
    wcs : astropy.wcs.WCS or None
        WCS of the stamp.
    position : tuple of float
        (x, y) of the requested position in stamp pixels.
    origin : tuple of int
        (x, y) in the original image of the stamp's pixel (0, 0) (may be negative).
    overlap_fraction : float
        Fraction of stamp pixels that come from the image.
    """

    data: np.ndarray
    wcs: WCS | None
    position: tuple[float, float]
    origin: tuple[int, int]
    overlap_fraction: float


def cutout(
    data: np.ndarray,
    position: SkyCoord | tuple[float, float],
    size: int | u.Quantity,
    *,
    wcs: WCS | None = None,
    sky: bool | None = None,
) -> Cutout:
    """Cut a square stamp around a position.

    Parameters
    ----------
    data : numpy.ndarray
        Image (ny, nx).
    position : SkyCoord or tuple of float
        A SkyCoord, (ra, dec) in degrees (with ``wcs``), or (x, y) pixels (0-based).
    size : int or astropy.units.Quantity
        Side in pixels, or an angle (needs ``wcs``).
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the image.
    sky : bool, optional
        Whether a tuple ``position`` is (ra, dec); default: True when a WCS is given.

    Returns
    -------
    Cutout

    Raises
    ------
    CutoutOutsideError
        If the stamp does not overlap the image at all.
    CutoutError
        For a sky position or angular size without a WCS, or a non-positive size.
    """
    arr = np.asarray(data, dtype=np.float32)
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
        coord = (
            position
            if isinstance(position, SkyCoord)
            else SkyCoord(position[0] * u.deg, position[1] * u.deg)
        )
        assert wcs is not None
        px, py = wcs.world_to_pixel(coord)
        pix = (float(px), float(py))
    else:
        pix = (float(position[0]), float(position[1]))  # type: ignore[index]
    if not all(np.isfinite(pix)):
        raise CutoutOutsideError(f"position {position} does not project onto the image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cut = Cutout2D(
                arr, pix, (npix, npix), wcs=wcs, mode="partial", fill_value=np.nan, copy=True
            )
    except NoOverlapError as exc:
        raise CutoutOutsideError(
            f"the {npix}x{npix} stamp at pixel ({pix[0]:.1f}, {pix[1]:.1f}) does not overlap "
            f"the {arr.shape[1]}x{arr.shape[0]} image",
            hint="check the position and the image's WCS",
        ) from exc
    in_stamp = (float(cut.input_position_cutout[0]), float(cut.input_position_cutout[1]))
    origin = (int(round(pix[0] - in_stamp[0])), int(round(pix[1] - in_stamp[1])))
    ny, nx = arr.shape
    xs = np.arange(origin[0], origin[0] + npix)
    ys = np.arange(origin[1], origin[1] + npix)
    inside = ((xs >= 0) & (xs < nx)).sum() * ((ys >= 0) & (ys < ny)).sum()
    return Cutout(
        data=np.asarray(cut.data, dtype=np.float32),
        wcs=cut.wcs,
        position=in_stamp,
        origin=origin,
        overlap_fraction=float(inside) / float(npix * npix),
    )


_STRETCHES: dict[str, BaseStretch] = {
    "linear": LinearStretch(),
    "sqrt": SqrtStretch(),
    "log": LogStretch(),
    "asinh": AsinhStretch(a=0.1),
}


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
        (vmin, vmax); (0, 1) for an all-NaN array; equal values widened by 1.
    """
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
        Stretch applied after the interval.
    interval : {'zscale', 'minmax'} or float
        See :func:`display_limits`.
    limits : tuple of float, optional
        Explicit (vmin, vmax), overriding ``interval`` (e.g. to show several stamps alike).

    Returns
    -------
    numpy.ndarray
        float64 in [0, 1]; NaN pixels become 0.
    """
    if stretch not in _STRETCHES:
        raise CutoutError(f"unknown stretch {stretch!r}", hint=f"one of {sorted(_STRETCHES)}")
    arr = np.asarray(data, dtype=float)
    lo, hi = limits if limits is not None else display_limits(arr, interval)
    scaled = ManualInterval(lo, hi)(np.where(np.isfinite(arr), arr, lo), clip=True)
    out = _STRETCHES[stretch](scaled, clip=True)
    return np.asarray(np.nan_to_num(out, nan=0.0), dtype=float)


def to_png(
    data: np.ndarray,
    *,
    stretch: str = "asinh",
    interval: str | float = "zscale",
    limits: tuple[float, float] | None = None,
    cmap: str = "gray",
    scale: int = 1,
) -> bytes:
    """Render an array as a PNG image, row 0 at the bottom (FITS orientation).

    Parameters
    ----------
    data : numpy.ndarray
        2-D array.
    stretch, interval, limits :
        See :func:`normalize`.
    cmap : str
        Matplotlib colour map.
    scale : int
        Integer magnification (nearest neighbour), e.g. 4 for a 63-pixel alert stamp.

    Returns
    -------
    bytes
        PNG file contents (RGBA, 8 bits).
    """
    import matplotlib
    import matplotlib.image  # the submodule is not loaded by `import matplotlib`

    arr = np.asarray(data)
    if arr.ndim != 2:
        raise CutoutError(f"can only render 2-D arrays, got shape {arr.shape}")
    img = normalize(arr, stretch=stretch, interval=interval, limits=limits)
    if scale > 1:
        img = np.kron(img, np.ones((int(scale), int(scale))))
    rgba = matplotlib.colormaps[cmap](img[::-1], bytes=True)
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, rgba, format="png")
    return buffer.getvalue()


def triplet_png(
    stamps: Sequence[np.ndarray],
    *,
    stretch: str = "asinh",
    common_limits: Sequence[bool] | None = None,
    scale: int = 2,
    gap: int = 2,
) -> bytes:
    """Side-by-side PNG of stamps (e.g. new, reference, difference).

    Parameters
    ----------
    stamps : sequence of numpy.ndarray
        2-D stamps of equal height.
    stretch : str
        See :func:`normalize`.
    common_limits : sequence of bool, optional
        Stamps flagged True share the zscale limits of the first flagged one (default: the
        first two, so new and reference look alike; the difference gets its own).
    scale : int
        Magnification.
    gap : int
        Blank pixels between stamps (before magnification).
    """
    if not stamps:
        raise CutoutError("no stamps to draw")
    heights = {np.asarray(s).shape[0] for s in stamps}
    if len(heights) != 1:
        raise CutoutError(f"stamps have different heights {sorted(heights)}")
    flags = (
        list(common_limits) if common_limits is not None else [i < 2 for i in range(len(stamps))]
    )
    shared = next((display_limits(s) for s, f in zip(stamps, flags, strict=False) if f), None)
    panels = []
    for s, f in zip(stamps, flags, strict=False):
        lim = shared if f else None
        panels.append(normalize(s, stretch=stretch, limits=lim))
        panels.append(np.zeros((panels[-1].shape[0], gap)))
    canvas = np.hstack(panels[:-1])
    return to_png(canvas, stretch="linear", limits=(0.0, 1.0), scale=scale)
