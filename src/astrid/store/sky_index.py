"""HEALPix sky index for cone searches that are right at the poles and across RA = 0.

Every row with a position stores ``healpix``: its nested HEALPix pixel at order
:data:`INDEX_ORDER` (29, pixels of about 0.4 mas). A cone query is turned into a short list of
contiguous ranges of that column (pre-filter, uses the B-tree index on any database), and then
cut exactly on the great-circle distance. Both steps are plain SQL + Python, so SQLite and
PostgreSQL return identical results.
"""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
from astropy.coordinates import Latitude, Longitude
from astropy_healpix import HEALPix
from astropy_healpix.core import healpix_cone_search

try:  # the C search itself: the public wrapper converts three Quantities per call
    from astropy_healpix import _core as _healpix_core
except ImportError:  # pragma: no cover - a future astropy-healpix without it
    _healpix_core = None

__all__ = [
    "INDEX_ORDER",
    "angular_separation_deg",
    "cone_ranges",
    "healpix_index",
]

INDEX_ORDER = 29
_INDEX = HEALPix(nside=2**INDEX_ORDER, order="nested")
_MAX_QUERY_ORDER = 20


def healpix_index(ra: float | np.ndarray, dec: float | np.ndarray) -> int | np.ndarray:
    """Nested HEALPix pixel at :data:`INDEX_ORDER` of positions in degrees."""
    pix = _INDEX.lonlat_to_healpix(Longitude(ra, unit=u.deg), Latitude(dec, unit=u.deg))
    if np.ndim(pix) == 0:
        return int(pix)
    return np.asarray(pix, dtype=np.int64)


def _query_order(radius_deg: float) -> int:
    # Pixels about half the radius across: few pixels, little excess area.
    resolution_at_0 = math.degrees(math.sqrt(4 * math.pi / 12))
    order = int(math.floor(math.log2(resolution_at_0 / max(radius_deg / 2, 1e-9))))
    return max(0, min(_MAX_QUERY_ORDER, order))


def cone_ranges(ra: float, dec: float, radius_deg: float) -> list[tuple[int, int]]:
    """Ranges ``[lo, hi)`` of the index column that cover a cone.

    Parameters
    ----------
    ra, dec : float
        Cone centre in degrees.
    radius_deg : float
        Cone radius in degrees (> 0).

    Returns
    -------
    list of (int, int)
        Sorted, merged half-open ranges of order-29 nested pixels. Every position within the
        cone lies in one of them (the query cone is inflated by one query-pixel size).
    """
    if radius_deg >= 90:
        return [(0, 12 * 4**INDEX_ORDER)]
    order = _query_order(radius_deg)
    nside = 2**order
    # HEALPix.pixel_resolution (sqrt of the pixel area), and the cone search on plain
    # degrees: Longitude/Latitude objects and a HEALPix instance per call cost more CPU
    # than the search (~1 ms per API cone request)
    margin = math.degrees(math.sqrt(4 * math.pi / (12 * nside**2)))
    pixels = _cone_pixels(ra % 360.0, dec, min(radius_deg + 1.5 * margin, 180.0), nside)
    shift = 2 * (INDEX_ORDER - order)
    ranges: list[tuple[int, int]] = []
    for p in sorted(int(x) for x in pixels):
        lo, hi = p << shift, (p + 1) << shift
        if ranges and ranges[-1][1] == lo:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    return ranges


def _cone_pixels(lon_deg: float, lat_deg: float, radius_deg: float, nside: int) -> np.ndarray:
    """Nested pixels of ``nside`` within ``radius_deg`` of a position (astropy-healpix's
    cone search; its extension module directly, as the wrapper's Quantity conversions cost
    ~2/3 of the call: same C function, same floats, same pixels)."""
    if _healpix_core is not None:
        return np.asarray(
            _healpix_core.healpix_cone_search(
                float(lon_deg), float(lat_deg), float(radius_deg), nside, "nested"
            )
        )
    return np.asarray(  # pragma: no cover - without the extension module's entry point
        healpix_cone_search(
            lon_deg * u.deg, lat_deg * u.deg, radius_deg * u.deg, nside=nside, order="nested"
        )
    )


def angular_separation_deg(
    ra1: float | np.ndarray, dec1: float | np.ndarray, ra2: float, dec2: float
) -> np.ndarray:
    """Great-circle separation in degrees (Vincenty formula, exact at all distances)."""
    r1, d1, r2, d2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    dra = r2 - r1
    num = np.hypot(
        np.cos(d2) * np.sin(dra), np.cos(d1) * np.sin(d2) - np.sin(d1) * np.cos(d2) * np.cos(dra)
    )
    den = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(dra)
    return np.degrees(np.arctan2(num, den))
