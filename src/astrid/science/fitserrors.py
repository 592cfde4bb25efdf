"""The errors of FITS reading: each names what was wrong with the file.

:mod:`astrid.science.fitsio` re-exports them; they live here so that the byte-level scanner
(:mod:`astrid.science.fitsscan`) and the reader share them without an import cycle.
"""

from __future__ import annotations

from astrid.errors import AstridError

__all__ = [
    "AmbiguousImageError",
    "FitsError",
    "ImageTooLargeError",
    "InvalidFitsError",
    "InvalidWCSError",
    "NoCelestialWCSError",
    "NoImageDataError",
    "UnusableImageError",
]


class FitsError(AstridError):
    """Base class of FITS reading errors."""


class InvalidFitsError(FitsError):
    """The bytes are not a readable FITS file (corrupt, truncated or another format)."""


class ImageTooLargeError(FitsError):
    """The file claims more pixels, bytes or header cards than the configured limits."""


class NoImageDataError(FitsError):
    """The FITS file has no 2-D image HDU."""


class AmbiguousImageError(FitsError):
    """The file holds several science images of one shape (a mosaic's CCDs) and none is
    named SCI: reading the first alone would silently drop the others."""


class NoCelestialWCSError(FitsError):
    """The image header has no usable celestial (RA/Dec) WCS."""


class UnusableImageError(FitsError):
    """The file is valid FITS but cannot be a usable image (all NaN, all zero...)."""


class InvalidWCSError(UnusableImageError):
    """The celestial WCS is present but degenerate (non-finite CRVAL/CDELT, singular CD)."""
