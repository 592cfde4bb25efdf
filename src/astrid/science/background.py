"""Background and noise maps of an image, and the input check every image measurement shares.

:func:`estimate_background` gives SExtractor-style mesh maps (``sep.Background``) after a first
pass that masks bright sources. :func:`valid_pixels` is the check every measurement of
:mod:`astrid.science.stars`, :mod:`astrid.science.cosmics` and :mod:`astrid.science.quality`
starts with (2-D, some finite unmasked pixels, not constant); its errors are defined here.

Masks are True = excluded. Units: pixels, image units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from astropy.stats import sigma_clipped_stats

from astrid.errors import AstridError
from astrid.science.stats import median_by_selection

__all__ = [
    "BackgroundEstimate",
    "ConstantImageError",
    "EmptyImageError",
    "QualityError",
    "estimate_background",
    "refuse_constant",
    "valid_pixels",
]


class QualityError(AstridError):
    """The image cannot be assessed."""


class EmptyImageError(QualityError):
    """The image has no finite, unmasked pixels."""


class ConstantImageError(QualityError):
    """The image has no noise (all valid pixels equal): not a sky exposure."""


@dataclass
class BackgroundEstimate:
    """Background and noise maps (image units), shape (ny, nx), and global values."""

    background: np.ndarray
    rms: np.ndarray
    global_background: float
    global_rms: float
    flatness: float
    #: Pixels left out of the final mesh statistics (excluded ones and the first pass's
    #: bright sources, dilated), bool (ny, nx); what ``estimate_background(previous=...)``
    #: reuses. None when not known.
    excluded: np.ndarray | None = None
    #: The first pass's bright-source pixels (dilated, not excluded), bool (ny, nx), or None.
    sources: np.ndarray | None = None


def valid_pixels(data: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The image as float64 with excluded pixels zeroed, and the excluded pixels.

    The image itself (not a copy) when it is float64 and already 0 at every excluded pixel;
    callers only read it.

    Excluded = ``mask`` | non-finite. Raises :class:`QualityError` (not 2-D),
    :class:`EmptyImageError` (nothing left) or :class:`ConstantImageError` (no noise).
    """
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim != 2:
        raise QualityError(
            f"image has shape {arr.shape}, not 2-D", hint="pass one image plane (ny, nx)"
        )
    bad = ~np.isfinite(arr)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    if bad.all():
        raise EmptyImageError(
            "the image has no finite unmasked pixels (all NaN/inf or masked)",
            hint="check the file and the mask",
        )
    refuse_constant(arr, bad)
    if bad.any():
        # no copy when the excluded pixels are already (+)0, e.g. an array this function
        # returned, passed on with the same mask
        at_bad = arr[bad]
        if at_bad.any() or np.signbit(at_bad).any():
            arr = np.where(bad, 0.0, arr)
    return np.ascontiguousarray(arr), bad


def refuse_constant(data: np.ndarray, bad: np.ndarray, what: str = "image") -> None:
    """Raise :class:`ConstantImageError` if every pixel of ``data`` (ny, nx) not ``bad`` has
    the same value: no sky noise, so no noise level, PSF or detection threshold exists
    (SEP, for one, reports an RMS of 1 for such an image instead of 0).

    ``what`` names the image in the message ("new image", "reference"). Non-finite pixels
    count as bad.
    """
    # min and max over the valid pixels without copying them out (a 4-Mpix image is 32 MB),
    # unless two valid pixels of the first row already differ (any real image)
    row = data[0][~bad[0] & np.isfinite(data[0])]
    if row.size > 1 and row.min() != row.max():
        return
    ok = ~bad & np.isfinite(data)
    if not ok.any():
        return  # nothing valid: the callers' own checks name that
    if np.min(data, where=ok, initial=np.inf) == np.max(data, where=ok, initial=-np.inf):
        good = data[ok]
        raise ConstantImageError(
            f"all {good.size} valid pixels of the {what} equal {good[0]:g}: no sky noise",
            hint="a blank, flat-filled or synthetic frame is not a sky exposure",
        )


def estimate_background(
    data: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    box_size: int | None = None,
    filter_size: int = 3,
    previous: BackgroundEstimate | None = None,
    global_stats: bool = True,
) -> BackgroundEstimate:
    """Background and noise maps by SExtractor's mesh method (``sep.Background``).

    Parameters
    ----------
    data : numpy.ndarray
        Image, shape (ny, nx).
    mask : numpy.ndarray, optional
        True = excluded.
    box_size : int, optional
        Mesh size in pixels (default: 64, or a quarter of the shorter side if smaller).
    filter_size : int
        Median filter of the mesh, in meshes.
    previous : BackgroundEstimate, optional
        An estimate of the same pixels with the same mesh and fewer pixels excluded (e.g.
        before cosmic rays were added to the mask): its bright-source pixels are reused
        instead of a first pass, and its maps too when the pixels left out of the mesh
        statistics come out the same (the global values are then taken over this mask).
    global_stats : bool
        Measure the global values (three whole-image statistics, ~0.1 s at 4 Mpix); False
        when only the maps are wanted: they are then NaN (the maps are the same).

    Returns
    -------
    BackgroundEstimate
        Maps in image units; ``flatness`` = std of the background map / global rms.

    Raises
    ------
    EmptyImageError, ConstantImageError
    """
    arr, bad = valid_pixels(data, mask)
    ny, nx = arr.shape
    box = int(box_size or max(8, min(64, min(ny, nx) // 4)))
    if (
        previous is not None
        and previous.sources is not None
        and previous.sources.shape == bad.shape
    ):
        src = previous.sources & ~bad
    else:
        # a first pass masks bright sources so that they do not lift the background
        bkg0 = sep.Background(arr, mask=bad, bw=box, bh=box, fw=filter_size, fh=filter_size)
        src = _dilate_cross(_above(arr, bkg0.back(), bkg0.rms(), 3.0), 2) & ~bad
    both = bad | src
    use_mask = both if _fraction(both) < 0.8 else bad
    if (
        previous is not None
        and previous.excluded is not None
        and np.array_equal(previous.excluded, use_mask)
    ):
        back, rms = previous.background, previous.rms  # the same mesh statistics
    else:
        bkg = sep.Background(arr, mask=use_mask, bw=box, bh=box, fw=filter_size, fh=filter_size)
        back, rms = bkg.back(), bkg.rms()
    ok = ~bad
    if not global_stats and _median_is_positive(rms, ok):
        nan = float("nan")
        return BackgroundEstimate(back, rms, nan, nan, nan, excluded=use_mask, sources=src)
    # np.median's values, from a partition of the values around the middle only
    glob_rms = float(median_by_selection(rms[ok]))
    if not glob_rms > 0:
        _, _, glob_rms = sigma_clipped_stats(arr[ok], sigma=3.0)
        rms = np.full_like(rms, glob_rms)
    back_ok = back[ok]
    flatness = float(np.std(back_ok) / glob_rms) if glob_rms > 0 else float("nan")
    return BackgroundEstimate(
        background=back,
        rms=rms,
        global_background=float(median_by_selection(back_ok)),
        global_rms=glob_rms,
        flatness=flatness,
        excluded=use_mask,
        sources=src,
    )


def _above(arr: np.ndarray, back: np.ndarray, rms: np.ndarray, k: float) -> np.ndarray:
    """``(arr - back) > k * rms`` (bool, shape of ``arr``), by bands of rows so that the
    float64 temporaries stay in the cache: the same comparisons, elementwise."""
    out = np.empty(arr.shape, dtype=bool)
    step = max(1, (1 << 16) // max(arr.shape[-1], 1))
    for r in range(0, arr.shape[0], step):
        rows = slice(r, r + step)
        np.greater(arr[rows] - back[rows], k * rms[rows], out=out[rows])
    return out


def _fraction(mask: np.ndarray) -> float:
    """``float(mask.mean())`` of a bool array, by counting: the same value (the float64 sum
    of a bool array is its exact count), without the float conversion of every pixel."""
    return np.count_nonzero(mask) / mask.size if mask.size else float(mask.mean())


def _median_is_positive(values: np.ndarray, ok: np.ndarray) -> bool:
    """Whether ``np.median(values[ok]) > 0``, by counting, for non-negative ``values`` (an
    rms map); False (unknown: the caller takes the median) if any selected value is
    negative or NaN. The ``n // 2``-th smallest of ``n`` (the median, or the larger of the
    two middle values whose mean it is) is > 0 iff at most ``n // 2`` values are 0."""
    n = int(np.count_nonzero(ok))
    if n == 0 or not np.all((values >= 0) | ~ok):  # NaN compares False: counted here too
        return False
    zeros = int(np.count_nonzero((values == 0) & ok))
    return zeros <= n // 2


def _dilate_cross(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=iterations)`` (3×3 cross, nothing beyond
    the edges) by shifted ORs: the same pixels at a fraction of the cost on 4 Mpix."""
    out = np.array(mask, dtype=bool, copy=True)
    for _ in range(iterations):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out
