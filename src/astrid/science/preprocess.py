"""One call from a raw (or reduced) frame to an image ready for differencing.

:func:`preprocess_image` runs, in order and each only when it applies:

1. ``calibrate`` — bias, dark, flat (:mod:`astrid.science.calibrate`), with variance;
2. ``mask`` — non-finite, saturated (grown by one pixel) and cosmic-ray pixels
   (:mod:`astrid.science.quality`, :mod:`astrid.science.cosmics`);
3. ``background`` — background and noise maps (:mod:`astrid.science.background`);
   subtracted if ``subtract_background``;
4. ``variance`` — when none came in: ``rms_map² + max(image - background, 0) / gain``;
5. ``quality`` — the :class:`~astrid.science.quality.ImageQuality` record;
6. ``align`` — onto a reference grid (:func:`astrid.science.align.align_image`).

Each step is timed (``timings``, seconds). Hooks are called after every step with the step name
and the mutable :class:`PreprocessState`, so a caller can log, inspect, or replace arrays
(e.g. add a survey-specific mask) without forking the pipeline. A hook that raises stops the
run with its own exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from astrid.errors import AstridError
from astrid.science.align import AlignmentResult, align_image
from astrid.science.background import BackgroundEstimate, estimate_background, valid_pixels
from astrid.science.calibrate import CalibrationSet, calibrate_image
from astrid.science.cosmics import cosmic_ray_mask
from astrid.science.fitsio import FitsImage
from astrid.science.fitsmeta import ImageMetadata, image_metadata
from astrid.science.fitswcs import celestial_wcs
from astrid.science.quality import ImageQuality, _assess_quality, saturation_mask

__all__ = [
    "Hook",
    "PreprocessError",
    "PreprocessState",
    "PreprocessedImage",
    "ReferenceGrid",
    "preprocess_image",
]


class PreprocessError(AstridError):
    """The preprocessing inputs are inconsistent."""


@dataclass
class ReferenceGrid:
    """The grid to align onto: a reference image, its WCS and mask."""

    data: np.ndarray
    wcs: WCS | None = None
    mask: np.ndarray | None = None


@dataclass
class PreprocessState:
    """What the steps pass along (hooks may read and replace any of it)."""

    image: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray
    header: fits.Header
    wcs: WCS | None
    background: np.ndarray | None = None
    background_rms: np.ndarray | None = None
    cosmic_rays: np.ndarray | None = None
    quality: ImageQuality | None = None
    alignment: AlignmentResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Hook = Callable[[str, PreprocessState], None]


@dataclass
class PreprocessedImage:
    """The preprocessed image.

    Attributes
    ----------
    image : numpy.ndarray
        float32 (ny, nx), on the reference grid if aligned; background-subtracted if asked.
    variance : numpy.ndarray
        float32, image units².
    mask : numpy.ndarray
        bool, True = excluded.
    metadata : ImageMetadata or None
        From the header (None without a celestial WCS).
    quality : ImageQuality
        Measured before alignment (on the native grid).
    wcs : astropy.wcs.WCS or None
        WCS of ``image``.
    background : numpy.ndarray
        Background map on the native grid.
    alignment : AlignmentResult or None
        Alignment details (shift, rotation, RMS).
    timings : dict of str to float
        Seconds per step.
    steps : list of str
        Steps that ran.
    """

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    metadata: ImageMetadata | None
    quality: ImageQuality
    wcs: WCS | None
    background: np.ndarray
    alignment: AlignmentResult | None
    timings: dict[str, float]
    steps: list[str]


def _header_float(header: fits.Header, *keys: str) -> float | None:
    for key in keys:
        value = header.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def preprocess_image(
    image: np.ndarray | FitsImage,
    header: fits.Header | None = None,
    wcs: WCS | None = None,
    *,
    calibration: CalibrationSet | None = None,
    reference: ReferenceGrid | None = None,
    variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    gain: float | None = None,
    read_noise: float | None = None,
    saturation: float | None = None,
    detect_cosmics: bool = True,
    subtract_background: bool = False,
    refine_alignment: bool = True,
    hooks: Sequence[Hook] = (),
) -> PreprocessedImage:
    """Calibrate, mask, measure and align one image.

    Parameters
    ----------
    image : numpy.ndarray or FitsImage
        The frame (ny, nx); a FitsImage brings its header.
    header : astropy.io.fits.Header, optional
        Keywords (GAIN, RDNOISE, SATURATE, EXPTIME, FILTER, WCS...).
    wcs : astropy.wcs.WCS, optional
        Celestial WCS; by default read from the header if it has one.
    calibration : CalibrationSet, optional
        Masters to apply (skip the step when None).
    reference : ReferenceGrid, optional
        Grid to align onto (skip the step when None).
    variance, mask : numpy.ndarray, optional
        Known variance (image units²) and bad pixels (True = excluded).
    gain, read_noise, saturation : float, optional
        Override the header values (e-/unit, e-, image units).
    detect_cosmics : bool
        Run L.A.Cosmic in the mask step.
    subtract_background : bool
        Return the image minus its background map.
    refine_alignment : bool
        Star-based refinement after the WCS reprojection.
    hooks : sequence of callables
        Each called as ``hook(step_name, state)`` after every step.

    Returns
    -------
    PreprocessedImage

    Raises
    ------
    AstridError subclasses
        From the steps: calibration mismatches, empty/constant images, non-overlapping
        images, too few stars to align.
    """
    timings: dict[str, float] = {}
    steps: list[str] = []
    if isinstance(image, FitsImage):
        header = header if header is not None else image.header
        data = np.asarray(image.data, dtype=np.float64)
    else:
        data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise PreprocessError(
            f"image has shape {data.shape}, not 2-D", hint="pass one image plane (ny, nx)"
        )
    hdr = header.copy() if header is not None else fits.Header()
    parsed: WCS | None = None  # the header's own WCS, parsed here (the metadata reuse it)
    if wcs is None:
        try:
            wcs = parsed = celestial_wcs(hdr)
        except AstridError:
            wcs = None
    gain = gain if gain is not None else _header_float(hdr, "GAIN", "EGAIN")
    read_noise = read_noise if read_noise is not None else _header_float(hdr, "RDNOISE")
    saturation = (
        saturation if saturation is not None else _header_float(hdr, "SATURATE", "SATLEVEL")
    )
    base_mask = np.zeros(data.shape, dtype=bool) if mask is None else np.asarray(mask, bool)
    state = PreprocessState(
        image=data,
        variance=None if variance is None else np.asarray(variance, dtype=np.float64),
        mask=base_mask | ~np.isfinite(data),
        header=hdr,
        wcs=wcs,
    )

    def run(name: str, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - t0
        steps.append(name)
        for hook in hooks:
            hook(name, state)

    if calibration is not None:

        def _calibrate() -> None:
            cal = calibrate_image(
                state.image,
                state.header,
                calibration=calibration,
                gain=gain,
                read_noise=read_noise,
                variance=state.variance,
                mask=state.mask,
            )
            state.image = cal.data.astype(np.float64)
            state.variance = cal.variance.astype(np.float64)
            state.mask = cal.mask
            state.header["HISTORY"] = f"AstrID calibrate: {', '.join(cal.steps)}"

        run("calibrate", _calibrate)

    # the mask step's background (before the cosmic rays are masked): the background step
    # reuses its bright-source mask, and its maps when the rays change nothing
    first: list[tuple[np.ndarray, BackgroundEstimate]] = []
    # without hooks (which may change the arrays): the image with 0 at every pixel of
    # state.mask, a private copy kept in step with the mask, so that the background and
    # quality steps need not zero it again (the same values as valid_pixels gives them)
    zeroed: list[np.ndarray] = []

    def _mask() -> None:
        sat = saturation_mask(state.image, saturation)  # NaN and ±inf are not saturated
        state.mask = state.mask | sat | ~np.isfinite(state.image)
        if detect_cosmics:
            # checked and zeroed at the excluded pixels once, for the background and the rays
            arr, bad = valid_pixels(state.image, state.mask)
            # its maps only: the global values are those of the background step
            bkg = estimate_background(arr, bad, global_stats=False)
            first.append((state.image, bkg))
            crs = cosmic_ray_mask(arr, mask=bad, background=bkg, gain=gain, saturation=saturation)
            state.cosmic_rays = crs
            state.mask = state.mask | crs
            if not hooks and not np.may_share_memory(arr, state.image):
                arr[crs] = 0.0  # (a copy) now zero at every pixel of the new mask
                zeroed.append(arr)

    run("mask", _mask)

    known: list[tuple[np.ndarray, BackgroundEstimate]] = []

    def _background() -> None:
        # only if no hook replaced the image since (the estimate is of those pixels)
        previous = first[0][1] if first and first[0][0] is state.image else None
        bkg = estimate_background(zeroed[0] if zeroed else state.image, state.mask,
                                  previous=previous)  # fmt: skip
        if not subtract_background:
            # the quality step reuses it if it would exclude the same pixels (and no hook
            # may have changed the image in between)
            known.append((state.mask | ~np.isfinite(state.image), bkg))
        state.background = bkg.background
        state.background_rms = bkg.rms
        if subtract_background:
            state.image = state.image - bkg.background
            zeroed.clear()

    run("background", _background)

    if state.variance is None:

        def _variance() -> None:
            assert state.background_rms is not None and state.background is not None
            var = state.background_rms.astype(np.float64) ** 2
            if gain:
                level = state.image if subtract_background else state.image - state.background
                var = var + np.clip(np.nan_to_num(level), 0, None) / gain
            state.variance = var

        run("variance", _variance)

    def _quality() -> None:
        result = _assess_quality(
            state.image,
            state.mask,
            header=state.header,
            gain=gain,
            read_noise=read_noise,
            saturation=None if subtract_background else saturation,
            zeropoint=None,
            detect_cosmics=False,
            pixel_scale=_pixel_scale(state.wcs),
            box_size=None,
            known_background=known[0] if known and not hooks else None,
            checked=zeroed[0] if zeroed and not hooks else None,
        )
        q = result.quality
        # cosmic rays were found in the mask step; report them in the record
        if state.cosmic_rays is not None:
            from dataclasses import replace

            q = replace(q, cosmic_ray_pixels=int(state.cosmic_rays.sum()))
        state.quality = q

    run("quality", _quality)

    if reference is not None:

        def _align() -> None:
            use_wcs = state.wcs is not None and reference.wcs is not None
            res = align_image(
                state.image,
                reference.data,
                wcs=state.wcs if use_wcs else None,
                reference_wcs=reference.wcs if use_wcs else None,
                variance=state.variance,
                mask=state.mask,
                reference_mask=reference.mask,
                refine=refine_alignment,
                saturation=None if subtract_background else saturation,
            )
            state.alignment = res
            state.image = res.data.astype(np.float64)
            state.variance = None if res.variance is None else res.variance.astype(np.float64)
            state.mask = res.mask
            state.wcs = reference.wcs

        run("align", _align)

    metadata: ImageMetadata | None
    try:
        metadata = image_metadata(
            state.header,
            (int(data.shape[0]), int(data.shape[1])),
            wcs=parsed if not hooks else None,  # no hook may have changed the header
        )
    except AstridError:
        metadata = None
    assert state.quality is not None and state.background is not None
    var_out = state.variance if state.variance is not None else np.full(state.image.shape, np.nan)
    return PreprocessedImage(
        image=state.image.astype(np.float32),
        variance=np.asarray(var_out, dtype=np.float32),
        mask=np.asarray(state.mask, dtype=bool),
        metadata=metadata,
        quality=state.quality,
        wcs=state.wcs,
        background=np.asarray(state.background, dtype=np.float32),
        alignment=state.alignment,
        timings=timings,
        steps=steps,
    )


def _pixel_scale(wcs: WCS | None) -> float | None:
    if wcs is None:
        return None
    try:
        return float(np.mean([s.to_value("arcsec") for s in wcs.proj_plane_pixel_scales()]))
    except Exception:  # degenerate WCS
        return None
