"""A reference image loaded and prepared once, for differencing many new images against it.

Everything :func:`astrid.science.difference.subtract_pair` computes from the reference alone
(its pixels, header and WCS read from the FITS, the mask, and the
:func:`~astrid.science.diffimage.prepare_image` products: background-subtracted pixels,
noise, gain, stars, PSF, saturation) depends on neither the new image nor its alignment.
:func:`prepare_reference` computes it; ``subtract_pair(new, prepared_reference)`` then skips
it and gives exactly the result of ``subtract_pair(new, ref)`` with the same options.
Keeping one per reference (a cache) is the caller's business (the pipeline's
:mod:`astrid.pipeline.stages.refcache`).

Also the input helpers shared with :mod:`astrid.science.difference`: :func:`load_image_input`
(pixels, header, WCS and FITS mask of a path, bytes, FitsImage or array) and
:func:`header_float`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from astrid.errors import AstridError
from astrid.science.background import refuse_constant
from astrid.science.diffimage import PreparedImage, ShapeMismatchError, prepare_image
from astrid.science.dqmask import dq_mask
from astrid.science.fitsio import FitsImage, companion_hdus, read_image
from astrid.science.psf import PSFEstimate

__all__ = [
    "GAIN_KEYS",
    "SATURATION_KEYS",
    "ImageInput",
    "PreparedReference",
    "header_float",
    "load_image_input",
    "prepare_reference",
]

ImageInput = str | Path | bytes | FitsImage | np.ndarray

#: Header keywords of the gain (electrons per unit) and of the saturation level, in order.
GAIN_KEYS = ("GAIN", "EGAIN", "CCDGAIN")
SATURATION_KEYS = ("SATURATE", "SATURATION", "SATLEVEL")

_MASK_EXTENSIONS = ("MASK", "BPM", "DQ")


def load_image_input(
    image: ImageInput,
) -> tuple[np.ndarray, fits.Header, WCS | None, np.ndarray | None]:
    """Pixels, header, WCS and, for a FITS file or bytes, its MASK/BPM/DQ extension (≠ 0 =
    excluded) when one of the image's shape is present."""
    if isinstance(image, np.ndarray):
        return np.asarray(image, dtype=np.float32), fits.Header(), None, None
    file_mask = None
    if not isinstance(image, FitsImage):
        source = image
        image = read_image(source)
        file_mask = file_mask_of(source, image.data.shape, header=image.header)
    return image.data, image.header, image.wcs, file_mask


def file_mask_of(
    source: str | Path | bytes,
    shape: tuple[int, ...],
    hdu: int | None = None,
    header: fits.Header | None = None,
) -> np.ndarray | None:
    """The first MASK/BPM/DQ extension of the FITS ``source`` that has the image's
    ``shape`` (ny, nx), as bool (True = excluded: :func:`~astrid.science.dqmask.dq_mask`,
    any set bit, but only JWST's ``DO_NOT_USE`` or HST's serious bits when the image's
    ``header`` says JWST or HST), else None.

    With ``hdu`` (the image's HDU index), the planes that belong to that image
    (:func:`~astrid.science.fitsio.companion_hdus`: ``N4_MASK`` for a mosaic's CCD ``N4``,
    ``DQ,2`` for chip ``SCI,2`` of an HST file).
    """
    if hdu is not None:
        planes = companion_hdus(source, hdu, _MASK_EXTENSIONS)
        for name in _MASK_EXTENSIONS:
            if name in planes:
                ext = read_image(source, hdu=planes[name], as_float=False)
                if ext.data.shape == tuple(shape):
                    return dq_mask(ext.data, header)
        return None
    for name in _MASK_EXTENSIONS:
        try:
            ext = read_image(source, hdu=name, as_float=False)
        except (KeyError, AstridError):
            continue
        if ext.data.shape == tuple(shape):
            return dq_mask(ext.data, header)
    return None


def header_float(header: fits.Header, *keys: str) -> float | None:
    """The first of ``keys`` in ``header`` holding a finite positive number (else None)."""
    for k in keys:
        v = header.get(k)
        try:
            if v is not None and np.isfinite(float(v)) and float(v) > 0:
                return float(v)
        except (TypeError, ValueError):
            continue
    return None


@dataclass(frozen=True)
class PreparedReference:
    """A reference image as :func:`~astrid.science.difference.subtract_pair` uses it.

    Attributes
    ----------
    data : numpy.ndarray
        The reference pixels as read, float32, shape (ny, nx).
    mask : numpy.ndarray of bool
        True = excluded: the given mask, the FITS MASK/BPM/DQ extension and non-finite
        pixels.
    header : astropy.io.fits.Header
        The reference's header (empty for a plain array).
    wcs : astropy.wcs.WCS or None
        Its celestial WCS (None for a plain array).
    prepared : PreparedImage
        :func:`~astrid.science.diffimage.prepare_image` of ``data`` and ``mask``.
    file_mask_pixels : int or None
        Pixels masked by the FITS mask extension (None: there was none).
    default_fwhm : float
        FWHM of the fallback PSF it was prepared with.
    """

    data: np.ndarray
    mask: np.ndarray
    header: fits.Header
    wcs: WCS | None
    prepared: PreparedImage
    file_mask_pixels: int | None = None
    default_fwhm: float = 3.0

    @property
    def nbytes(self) -> int:
        """Bytes held by its arrays (what a cache of these should count)."""
        p = self.prepared
        arrays = [self.data, self.mask, p.data, p.mask, p.psf.array]
        if p.saturated is not None:
            arrays.append(p.saturated)
        return int(sum(a.nbytes for a in arrays))


def reference_side(
    ref: ImageInput, ref_mask: np.ndarray | None
) -> tuple[np.ndarray, fits.Header, WCS | None, np.ndarray, int | None]:
    """The reference's pixels, header, WCS, full mask (given | FITS mask | non-finite) and
    the number of pixels its FITS mask extension excludes (None without one)."""
    data, header, wcs, file_mask = load_image_input(ref)
    rmask = np.zeros(data.shape, bool) if ref_mask is None else np.asarray(ref_mask, bool)
    if rmask.shape != data.shape:
        raise ShapeMismatchError("a mask does not have the shape of its image")
    if file_mask is not None:
        rmask = rmask | file_mask
    rmask = rmask | ~np.isfinite(data)
    refuse_constant(data, rmask, "reference")
    return data, header, wcs, rmask, None if file_mask is None else int(file_mask.sum())


def prepare_reference(
    ref: ImageInput,
    ref_mask: np.ndarray | None = None,
    *,
    gain: float | None = None,
    saturation: float | None = None,
    psf: PSFEstimate | np.ndarray | None = None,
    noise: float | None = None,
    default_fwhm: float = 3.0,
) -> PreparedReference:
    """Load and prepare a reference once (see the module docstring).

    Parameters
    ----------
    ref : path, bytes, FitsImage or numpy.ndarray
        The reference image (as for :func:`~astrid.science.difference.subtract_pair`).
    ref_mask : numpy.ndarray of bool, optional
        True = excluded, shape of the reference.
    gain, saturation : float, optional
        Electrons per unit and saturation level; by default the GAIN and SATURATE header
        keywords (:data:`GAIN_KEYS`, :data:`SATURATION_KEYS`), as ``subtract_pair`` does.
    psf : PSFEstimate or numpy.ndarray, optional
        A known PSF of the reference (``subtract_pair``'s ``ref_psf``).
    noise : float, optional
        Its background noise (``subtract_pair``'s ``ref_noise``, e.g. from its variance).
    default_fwhm : float
        FWHM of the fallback PSF (``subtract_pair``'s ``default_fwhm``).

    Returns
    -------
    PreparedReference
    """
    data, header, wcs, rmask, n_file = reference_side(ref, ref_mask)
    prepared = prepare_image(
        data,
        rmask,
        gain=gain if gain is not None else header_float(header, *GAIN_KEYS),
        saturation=saturation if saturation is not None else header_float(header, *SATURATION_KEYS),
        psf=psf,
        default_fwhm=default_fwhm,
        noise=noise,
    )
    return PreparedReference(data, rmask, header, wcs, prepared, n_file, float(default_fwhm))
