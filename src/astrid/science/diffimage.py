"""Inputs and products of image differencing, shared by ZOGY and the classic method.

* :class:`PreparedImage`: one background-subtracted image, float32 shape (ny, nx), with its
  mask (True = excluded), background noise and gain (image units, electrons per unit),
  stars and PSF; built by :func:`prepare_image`.
* :class:`DifferenceResult`: the difference D, score (sigma), PSF-photometry flux and error
  (reference-image units), P_D and the cosmic-ray template, all shape (ny, nx) or small
  centred arrays.
* :func:`psf_from_array`: a supplied PSF image (e.g. WebbPSF) as a unit-sum, odd-sized
  :class:`~astrid.science.psf.PSFEstimate`.
* The errors :class:`DifferenceError` and :class:`ShapeMismatchError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from astrid.errors import AstridError
from astrid.science.morphology import dilate_cross
from astrid.science.psf import PSFEstimate
from astrid.science.psf_estimate import estimate_psf
from astrid.science.psf_spatial import PSFGrid
from astrid.science.psf_stars import StarList, background_and_noise, find_stars
from astrid.science.stats import robust_sigma

__all__ = [
    "DifferenceError",
    "DifferenceResult",
    "PreparedImage",
    "ShapeMismatchError",
    "prepare_image",
    "psf_from_array",
]


class DifferenceError(AstridError):
    """Base class of image-differencing errors."""


class ShapeMismatchError(DifferenceError):
    """The two images (or an image and its mask) do not have the same shape."""


#: Background noise (image units) that the float32 differencing handles: measured exact
#: (the same candidates and S/N) for noise from 1.6e-10 to 1.6e10, silently empty at
#: 1.6e-11 and 1.6e11; refused outside this range, which keeps a factor of eight of margin.
NOISE_RANGE = (2e-10, 2e10)


@dataclass
class PreparedImage:
    """A background-subtracted image with its mask, noise, stars and PSF.

    Attributes
    ----------
    data : numpy.ndarray
        Background-subtracted pixels, float32, shape (ny, nx); masked pixels set to 0.
    mask : numpy.ndarray of bool
        True = excluded (non-finite, flagged, saturated), shape (ny, nx).
    noise : float
        Background standard deviation in image units.
    gain : float
        Effective gain in electrons per image unit used for the source-noise term.
    stars : StarList
        Detected stars.
    psf : PSFEstimate
        Whole-image PSF.
    saturation : float or None
        Saturation level above background in image units.
    saturated : numpy.ndarray of bool or None
        Saturated pixels (dilated), shape (ny, nx).
    psf_given : bool
        True when the PSF was supplied by the caller (it is then used for every tile).
    """

    data: np.ndarray
    mask: np.ndarray
    noise: float
    gain: float
    stars: StarList
    psf: PSFEstimate
    saturation: float | None = None
    saturated: np.ndarray | None = None
    psf_given: bool = False


@dataclass
class DifferenceResult:
    """Products of a difference between a new and a reference image (same pixel grid).

    Attributes
    ----------
    diff : numpy.ndarray
        Difference image D, float32, shape (ny, nx). For ``zogy`` the proper difference,
        whose noise is white with unit variance; for ``classic`` the decorrelated
        difference in reference-image units.
    score : numpy.ndarray
        Detection significance in sigma (S_corr for zogy), float32, shape (ny, nx);
        positive where the new image is brighter. 0 where masked.
    flux : numpy.ndarray
        PSF-photometry flux of a point source centred on each pixel, in reference-image
        units, float32, shape (ny, nx).
    flux_err : numpy.ndarray
        1-sigma error of ``flux`` (same units and shape).
    psf : numpy.ndarray
        PSF of ``diff`` (P_D), small odd-sized centred array, unit sum.
    cr_template : numpy.ndarray
        Response of ``diff`` to a single-pixel event (delta function) in the new image,
        small centred array normalised to unit L2 norm (cosmic-ray hypothesis).
    mask : numpy.ndarray of bool
        True = excluded, shape (ny, nx).
    new_psf, ref_psf : PSFEstimate
        PSFs of the two inputs.
    flux_ratio : float
        F_n / F_r, the new image's flux scale relative to the reference.
    new_noise, ref_noise : float
        Background noise of each input in its own units.
    method : str
        ``"zogy"`` or ``"classic"``.
    score_scale : float
        Empirical factor the score was divided by so that its robust standard deviation is
        1 (corrects for correlated noise, e.g. after resampling); 1.0 when not applied.
    astrometric_sigma : tuple of float
        (sigma_x, sigma_y) registration noise in pixels used in the score.
    ref_stars : StarList
        Stars detected on the reference (for nearest-star distances).
    saturation_mask : numpy.ndarray of bool
        True where either input is saturated (dilated), shape (ny, nx).
    notes : list of str
        Fallbacks and warnings taken during the run (PSF fallbacks, default flux ratio...).
    psf_grids : tuple of PSFGrid or None
        (new, reference) PSFs of the sub-images ZOGY used, when it used per-sub-image PSFs.
    """

    diff: np.ndarray
    score: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    psf: np.ndarray
    cr_template: np.ndarray
    mask: np.ndarray
    new_psf: PSFEstimate
    ref_psf: PSFEstimate
    flux_ratio: float
    new_noise: float
    ref_noise: float
    method: str
    score_scale: float = 1.0
    astrometric_sigma: tuple[float, float] = (0.0, 0.0)
    ref_stars: StarList | None = None
    saturation_mask: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    psf_grids: tuple[PSFGrid | None, PSFGrid | None] = (None, None)


def _check_shapes(new: np.ndarray, ref: np.ndarray) -> None:
    if new.ndim != 2 or ref.ndim != 2:
        raise ShapeMismatchError(
            f"images must be 2-D, got shapes {new.shape} and {ref.shape}",
            hint="pass single image planes",
        )
    if new.shape != ref.shape:
        raise ShapeMismatchError(
            f"new image {new.shape} and reference {ref.shape} have different shapes",
            hint="align the new image onto the reference grid first (astrid detect does it)",
        )


def prepare_image(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    gain: float | None = None,
    saturation: float | None = None,
    psf: PSFEstimate | np.ndarray | None = None,
    default_fwhm: float = 3.0,
    min_stars: int = 5,
    noise: float | None = None,
    max_psf_size: int = 61,
) -> PreparedImage:
    """Subtract the background, build the mask, find stars and estimate the PSF.

    Parameters
    ----------
    image : numpy.ndarray
        Image pixels, shape (ny, nx); NaN/inf are masked.
    mask : numpy.ndarray of bool, optional
        True = excluded, shape (ny, nx).
    gain : float, optional
        Electrons per image unit, for the source-noise term. If omitted it is estimated as
        ``background / noise^2`` when the sky is well above zero (Poisson-limited sky),
        else it is infinite: the source-noise term of that image is then left out (the
        differencing functions say so in their notes).
    saturation : float, optional
        Saturation level in image units (raw, before background subtraction); pixels at or
        above it are masked and stars touching it are not used for the PSF. If omitted and
        at least 3 pixels share the image's maximum value, that value is taken as the
        saturation level (a clipped plateau).
    psf : PSFEstimate or numpy.ndarray, optional
        A known PSF on this image's pixel grid (skips estimation), e.g. a WebbPSF model
        (detector-sampled). An array is recentred, cropped to at most ``max_psf_size``
        pixels and normalised to unit sum; it is used for the whole image (no per-tile
        PSFs).
    default_fwhm : float
        FWHM in pixels for the Gaussian fallback PSF.
    min_stars : int
        Fewest usable stars for an empirical PSF.
    noise : float, optional
        Background noise to use instead of the measured one (e.g. the noise measured
        before resampling, which the matched filter's low frequencies still carry).
    max_psf_size : int
        Largest side in pixels kept of a supplied PSF array (larger ones are cropped
        around their centre; the lost wings are assumed negligible).

    Returns
    -------
    PreparedImage

    Raises
    ------
    PSFError
        If a supplied PSF is not a finite 2-D array with a positive sum.
    """
    data = np.array(image, dtype=np.float32, copy=True)
    bad = ~np.isfinite(data)
    any_nonfinite = bool(bad.any())
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape:
            raise ShapeMismatchError(f"mask {mask.shape} does not match image {data.shape}")
        bad |= mask
    sat = np.zeros(data.shape, bool)
    if saturation is None:
        # No level given: a plateau of >= 3 pixels at the exact maximum is a saturation level.
        finite = data[np.isfinite(data)] if any_nonfinite else data.ravel()
        if finite.size:
            top = float(finite.max())
            if np.count_nonzero(finite == top) >= 3:
                saturation = top
    if saturation is not None and np.isfinite(saturation):
        with np.errstate(invalid="ignore"):
            sat = data >= saturation
        if any_nonfinite:
            # +inf is a bad pixel, not a saturated star: grown as saturation, each one would
            # mask a PSF-sized disk (182 scattered infs masked 47 % of a 512² image)
            sat &= np.isfinite(data)
        if sat.any():
            sat = dilate_cross(sat, 2)
            bad |= sat
    if bad.all():
        raise DifferenceError(_why_all_excluded(data, mask, sat, saturation))
    data[bad] = 0.0
    back, measured = background_and_noise(data, bad)
    noise = measured if noise is None else float(noise)
    # the background map is smooth on the mesh scale (>= 16 px): a sparse sample gives its
    # median as well as every pixel does, at a fraction of the cost
    step = 4 if min(data.shape) >= 256 else 1
    sample = back[::step, ::step][~bad[::step, ::step]]
    level = float(np.median(sample if sample.size else back[~bad]))
    data -= back
    data[bad] = 0.0
    if not np.isfinite(noise) or noise <= 0:
        raise DifferenceError(
            "the image background noise is zero or undefined",
            hint="is the image constant or already masked everywhere?",
        )
    if not NOISE_RANGE[0] <= noise <= NOISE_RANGE[1]:
        # ZOGY's denominators carry the noise to the fourth power: in float32 they under- or
        # overflow and the score map is silently empty (0 candidates at 1.6e-11 or 1.6e11)
        raise DifferenceError(
            f"the image background noise is {noise:.3g} image units, outside the "
            f"{NOISE_RANGE[0]:.0e} to {NOISE_RANGE[1]:.0e} that float32 differencing "
            "can represent",
            hint="rescale both images by the same factor first, e.g. from erg/s/cm²/Hz to µJy",
        )
    if gain is None or not np.isfinite(gain) or gain <= 0:
        gain = level / noise**2 if level > 5 * noise else float("inf")
    sat_above = None if saturation is None else float(saturation) - level
    stars = find_stars(data, noise, bad, saturation=sat_above, psf_size=31)
    if psf is None:
        model = estimate_psf(
            data,
            noise,
            bad,
            stars=stars,
            saturation=sat_above,
            default_fwhm=default_fwhm,
            min_stars=min_stars,
        )
    elif isinstance(psf, PSFEstimate):
        model = psf
    else:
        model = psf_from_array(psf, max_psf_size)
    return PreparedImage(
        data, bad, float(noise), float(gain), stars, model, sat_above, sat, psf is not None
    )


def _why_all_excluded(
    data: np.ndarray, mask: np.ndarray | None, sat: np.ndarray, saturation: float | None
) -> str:
    """Name what excluded every pixel: non-finite values, the mask, or a saturation level
    below the data (a SATURATE keyword that does not describe scaled or coadded pixels)."""
    n = data.size
    parts = []
    nonfinite = int(np.count_nonzero(~np.isfinite(data)))
    if nonfinite:
        parts.append(f"{nonfinite} of {n} pixels are NaN or infinite")
    if mask is not None and mask.any():
        parts.append(f"{int(np.count_nonzero(mask))} of {n} are masked")
    if sat.any() and saturation is not None:
        parts.append(
            f"{int(np.count_nonzero(sat))} of {n} are at or within 2 px of the saturation "
            f"level {saturation:g} (is the SATURATE keyword right for these pixel values?)"
        )
    return "the image has no finite, unmasked pixels: " + "; ".join(parts or ["no pixels"])


def psf_from_array(psf: np.ndarray, max_size: int = 61) -> PSFEstimate:
    """A :class:`~astrid.science.psf.PSFEstimate` from a supplied PSF image.

    Parameters
    ----------
    psf : numpy.ndarray
        PSF image on the science image's pixel grid, shape (n, m), any normalisation
        (e.g. the primary HDU of a WebbPSF ``*.WebbPSF.fits`` file).
    max_size : int
        Largest side in pixels kept (odd; larger PSFs are cropped around their peak).

    Returns
    -------
    PSFEstimate
        Odd-sized, centred, unit-sum PSF (``reason`` is ``"given"``).

    Raises
    ------
    PSFError
        If the array is not 2-D, not finite, or does not have a positive sum.
    """
    from astrid.science.psf import PSFError, _moments_fwhm, recentre_psf

    arr = np.asarray(psf, dtype=np.float64)
    if arr.ndim != 2 or min(arr.shape) < 3 or not np.all(np.isfinite(arr)) or arr.sum() <= 0:
        raise PSFError(
            f"a supplied PSF must be a finite 2-D image with a positive sum (got shape "
            f"{arr.shape})",
            hint="pass the PSF image itself, e.g. fits.getdata('x.WebbPSF.fits')",
        )
    half = (min(min(arr.shape), int(max_size)) - 1) // 2
    peak = np.unravel_index(int(np.argmax(arr)), arr.shape)
    py = int(np.clip(peak[0], half, arr.shape[0] - 1 - half))
    px = int(np.clip(peak[1], half, arr.shape[1] - 1 - half))
    cut = arr[py - half : py + half + 1, px - half : px + half + 1]
    cut = recentre_psf(cut / cut.sum())
    return PSFEstimate(cut, _moments_fwhm(cut), 0, False, "given", "given")


def _robust_std(values: np.ndarray) -> float:
    if values.size == 0:
        return 1.0
    if values.size > 400_000:
        values = values[:: values.size // 200_000]
    return robust_sigma(values)
