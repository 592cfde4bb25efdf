"""The celestial WCS of a FITS header: reading it, refusing a degenerate one, DSS plates.

* :func:`celestial_wcs`: the RA/Dec WCS astropy reads from a header (TAN, TPV, SIP...); a
  Digitized Sky Survey plate solution without FITS WCS goes to :func:`dss_plate_wcs`.
* :func:`validate_wcs`: that WCS if it maps an image of shape (ny, nx) onto the sky, else
  :class:`~astrid.science.fitserrors.InvalidWCSError` naming the degenerate keyword.
* :func:`dss_plate_wcs`: a TAN-SIP WCS (SIP order 3) fitted to a DSS plate solution.
* :func:`equatorial_wcs`: a WCS in galactic, ecliptic, FK4 (B1950) or another non-ICRS frame
  re-expressed exactly in ICRS RA/Dec, so that every ``pixel_to_world_values`` in AstrID
  (catalogue positions, alignment, cone search) means ICRS degrees.

Angles are in degrees; long headers are cut to their WCS cards before parsing (speed).
"""

from __future__ import annotations

import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from astrid.science.fitserrors import (
    InvalidWCSError,
    NoCelestialWCSError,
)

__all__ = ["celestial_wcs", "dss_plate_wcs", "equatorial_wcs", "validate_wcs"]


def validate_wcs(header: fits.Header, shape: tuple[int, int]) -> WCS:
    """The celestial WCS of ``header`` if it maps the image of ``shape`` (ny, nx) onto the
    sky; raises :class:`InvalidWCSError` naming the degenerate keyword otherwise."""
    for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2"):
        value = header.get(key)
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidWCSError(f"{key} = {value!r} is not a number") from exc
        if not np.isfinite(number):
            raise InvalidWCSError(f"{key} is {value!r}: the WCS is unusable")
        if key.startswith("CDELT") and number == 0:
            raise InvalidWCSError(f"{key} is zero: the WCS is singular")
        if key.startswith("CRVAL") and abs(number) > 90:
            ctype = str(header.get("CTYPE" + key[-1], ""))
            if ctype[:4] in ("DEC-", "GLAT", "ELAT", "SLAT"):
                raise InvalidWCSError(
                    f"{key} = {value!r} is not a latitude ({ctype} must lie within ±90°)"
                )
    wcs = celestial_wcs(header)
    inner = wcs.wcs
    with warnings.catch_warnings():  # "cdelt will be ignored since cd is present"
        warnings.simplefilter("ignore", RuntimeWarning)
        cdelt = np.array(inner.cdelt, dtype=float)
    for label, values in (("CRVAL", inner.crval), ("CRPIX", inner.crpix), ("CDELT", cdelt)):
        if not np.all(np.isfinite(values)):
            raise InvalidWCSError(f"{label} is not finite ({list(values)}): the WCS is unusable")
    try:
        matrix = np.asarray(wcs.pixel_scale_matrix, dtype=float)
    except Exception as exc:  # astropy raises several types for a broken matrix
        raise InvalidWCSError(f"the CD/PC matrix cannot be evaluated: {exc}") from exc
    if not np.all(np.isfinite(matrix)):
        raise InvalidWCSError("the CD/PC matrix is not finite: the WCS is unusable")
    scale = float(np.max(np.abs(matrix)))
    if scale == 0 or abs(float(np.linalg.det(matrix))) <= 1e-12 * scale * scale:
        raise InvalidWCSError("the CD/PC matrix is singular: pixels do not map onto the sky")
    ny, nx = shape
    centre = wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    if not np.all(np.isfinite(np.asarray(centre, dtype=float))):
        raise InvalidWCSError("the image centre does not map onto the sky: the WCS is unusable")
    return wcs


def celestial_wcs(header: fits.Header) -> WCS:
    """Return the celestial WCS of ``header`` (TAN, TPV, SIP... as astropy reads them).

    Raises
    ------
    NoCelestialWCSError
        If the header has no RA/Dec axes.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(_wcs_cards(header), relax=True)
        except Exception as exc:  # astropy raises many types for broken WCS keywords
            raise NoCelestialWCSError(
                f"the WCS keywords cannot be parsed: {_one_line(str(exc))}"
            ) from exc
    if not wcs.has_celestial and "AMDX1" in header and "PLTRAH" in header:
        return dss_plate_wcs(header)
    if not wcs.has_celestial:
        raise NoCelestialWCSError(
            "the image has no celestial WCS (no RA/Dec CTYPE keywords)",
            hint="solve its astrometry first, e.g. with astrometry.net",
        )
    return equatorial_wcs(wcs.celestial)


def _one_line(message: str) -> str:
    """wcslib's multi-line report without its C source locations ("ERROR 7 in wcsset() at
    line 2740 of file ...:"), as one line."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    kept = [ln for ln in lines if not (ln.startswith("ERROR ") and " of file " in ln)]
    return "; ".join(kept or lines)


#: Projections whose reference point is the native pole (Calabretta & Greisen 2002, §5.1),
#: so that a change of celestial frame is a new CRVAL and LONPOLE alone. TPV is TAN with a
#: distortion polynomial applied before the projection.
_ZENITHAL = frozenset({"AZP", "SZP", "TAN", "STG", "SIN", "ARC", "ZPN", "ZEA", "AIR", "TPV"})


def equatorial_wcs(wcs: WCS) -> WCS:
    """``wcs`` if its celestial frame is ICRS (or FK5 J2000, within 0.02"), else the same
    pixel-to-sky mapping expressed in ICRS RA/Dec.

    A frame change is a rotation of the sphere. For a zenithal projection the reference
    pixel sits at the native pole, so the rotated WCS keeps every other keyword (CD/PC,
    CRPIX, SIP and TPV distortions, projection parameters) and only changes ``CRVAL`` to the
    ICRS position of the reference point and ``LONPOLE`` to the native longitude of the
    ICRS north pole: the mapping is exact, not refitted.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        A 2-axis celestial WCS (``WCS.celestial``).

    Returns
    -------
    astropy.wcs.WCS
        A WCS whose world coordinates are ICRS right ascension and declination (degrees).

    Raises
    ------
    InvalidWCSError
        If the frame is not ICRS and the projection is not zenithal (e.g. a galactic CAR
        mosaic): reproject such an image onto an RA/Dec grid first.
    """
    from astropy.coordinates import FK5, ICRS, SkyCoord
    from astropy.time import Time
    from astropy.wcs.utils import wcs_to_celestial_frame

    inner = wcs.wcs
    lng, lat = inner.lng, inner.lat
    axis = inner.ctype[lng][:4]
    try:
        frame = wcs_to_celestial_frame(wcs)
    except ValueError as exc:
        raise InvalidWCSError(
            f"the celestial frame of the WCS ({inner.ctype[lng]}, {inner.ctype[lat]}) is not "
            f"one astropy can place on the sky: {exc}",
            hint="give the image an RA/Dec (ICRS) WCS",
        ) from exc
    if axis == "ELON":
        # wcslib reads ELON/ELAT with RADESYS' default (ICRS): they are ecliptic longitude
        # and latitude of the mean equinox EQUINOX (FITS WCS paper II, §3.1), J2000 if unset.
        from astropy.coordinates import BarycentricMeanEcliptic

        equinox = float(inner.equinox) if np.isfinite(inner.equinox) else 2000.0
        frame = BarycentricMeanEcliptic(equinox=Time(equinox, format="jyear"))
    elif axis not in ("RA--", "GLON", "SLON"):
        raise InvalidWCSError(
            f"the WCS axes {inner.ctype[lng]!r}, {inner.ctype[lat]!r} are not a celestial "
            "frame AstrID can convert to RA/Dec (equatorial, galactic, supergalactic or "
            "ecliptic)",
            hint="give the image an RA/Dec (ICRS) WCS",
        )
    if isinstance(frame, ICRS) or (
        isinstance(frame, FK5) and abs(frame.equinox.jyear - Time("J2000").jyear) < 1e-6
    ):
        return wcs
    proj = inner.ctype[lng][5:8]
    if proj not in _ZENITHAL:
        raise InvalidWCSError(
            f"the WCS is in {frame.name} coordinates with a {proj} projection; AstrID converts "
            f"only zenithal projections ({', '.join(sorted(_ZENITHAL))}) to RA/Dec",
            hint="reproject the image onto an RA/Dec grid first (e.g. with reproject)",
        )
    ref = SkyCoord(inner.crval[lng], inner.crval[lat], unit="deg", frame=frame).icrs
    if abs(float(ref.dec.deg)) > 89.999:
        raise InvalidWCSError(
            f"the reference point of this {frame.name} WCS is at an ICRS pole, where its "
            "orientation cannot be carried over to RA/Dec",
            hint="reproject the image onto an RA/Dec grid first (e.g. with reproject)",
        )
    # The reference point is the native pole, so the direction of ICRS north there runs
    # along the native meridian phi = LONPOLE: a point 1" north has that native longitude.
    north = SkyCoord(ref.ra, ref.dec + 1.0 / 3600.0 * ref.dec.unit, frame="icrs")
    north_old = north.transform_to(frame).spherical
    world = np.zeros((1, 2))
    world[0, lng] = north_old.lon.deg
    world[0, lat] = north_old.lat.deg
    lonpole = float(inner.s2p(world, 0)["phi"][0])
    out = wcs.deepcopy()
    ctype = list(out.wcs.ctype)
    ctype[lng] = "RA--" + ctype[lng][4:]
    ctype[lat] = "DEC-" + ctype[lat][4:]
    out.wcs.ctype = ctype
    crval = np.array(out.wcs.crval, dtype=float)
    crval[lng], crval[lat] = float(ref.ra.deg), float(ref.dec.deg)
    out.wcs.crval = crval
    out.wcs.lonpole = lonpole
    out.wcs.latpole = 90.0
    out.wcs.radesys = "ICRS"
    out.wcs.equinox = np.nan
    out.wcs.set()
    return out


def _plate_polynomial(c: list[float], u: np.ndarray, v: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """The 13-term DSS plate polynomial (arcsec) of plate coordinates ``u``, ``v`` (mm),
    ``r2 = u² + v²``: ``xi`` from AMDX with (u, v) = (x, y), ``eta`` from AMDY with (y, x)."""
    return (
        c[0] * u
        + c[1] * v
        + c[2]
        + c[3] * u * u
        + c[4] * u * v
        + c[5] * v * v
        + c[6] * r2
        + c[7] * u**3
        + c[8] * u * u * v
        + c[9] * u * v * v
        + c[10] * v**3
        + c[11] * u * r2
        + c[12] * u * r2 * r2
    )


def dss_plate_wcs(header: fits.Header) -> WCS:
    """A TAN-SIP WCS fitted to a Digitized Sky Survey plate solution.

    The plate solution (``PLTRAH``..., ``PPO3``/``PPO6``, ``XPIXELSZ``/``YPIXELSZ``,
    ``CNPIX1/2``, ``AMDX1..13``, ``AMDY1..13``) maps pixels to standard coordinates as in
    WCSTools' ``dsspos``; it is evaluated on a grid and fitted with
    :func:`astropy.wcs.utils.fit_wcs_from_points` (SIP order 3).

    Raises
    ------
    NoCelestialWCSError
        If keywords of the plate solution are missing.
    """
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import fit_wcs_from_points

    try:
        ra0 = 15.0 * (
            float(header["PLTRAH"]) + float(header["PLTRAM"]) / 60 + float(header["PLTRAS"]) / 3600
        )
        sign = -1.0 if str(header["PLTDECSN"]).strip() == "-" else 1.0
        dec0 = sign * (
            float(header["PLTDECD"])
            + float(header["PLTDECM"]) / 60
            + float(header["PLTDECS"]) / 3600
        )
        ppo3, ppo6 = float(header["PPO3"]), float(header["PPO6"])
        xsz, ysz = float(header["XPIXELSZ"]), float(header["YPIXELSZ"])
        cnpix1, cnpix2 = float(header.get("CNPIX1", 0)), float(header.get("CNPIX2", 0))
        amdx = [float(header[f"AMDX{i}"]) for i in range(1, 14)]
        amdy = [float(header[f"AMDY{i}"]) for i in range(1, 14)]
        nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
    except (KeyError, ValueError) as exc:
        raise NoCelestialWCSError(
            f"the DSS plate solution is incomplete: {exc}",
            hint="use a DSS image with a FITS WCS (e.g. from SkyView)",
        ) from exc
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 12), np.linspace(0, ny - 1, 12))
    px, py = gx.ravel(), gy.ravel()
    # plate coordinates in mm (FITS pixel = 0-based + 1)
    x = (ppo3 - xsz * (px + 1 + cnpix1 - 0.5)) / 1000.0
    y = (ysz * (py + 1 + cnpix2 - 0.5) - ppo6) / 1000.0
    r2 = x * x + y * y
    # AMDY is AMDX's polynomial with the plate axes swapped
    xi = _plate_polynomial(amdx, x, y, r2)
    eta = _plate_polynomial(amdy, y, x, r2)
    xi_r, eta_r = np.radians(xi / 3600.0), np.radians(eta / 3600.0)
    d0, a0 = np.radians(dec0), np.radians(ra0)
    ra = a0 + np.arctan2(xi_r / np.cos(d0), 1.0 - eta_r * np.tan(d0))
    dec = np.arctan(((eta_r + np.tan(d0)) * np.cos(ra - a0)) / (1.0 - eta_r * np.tan(d0)))
    coords = SkyCoord(np.degrees(ra) % 360.0, np.degrees(dec), unit="deg")
    return fit_wcs_from_points((px, py), coords, projection="TAN", sip_degree=3)


_WCS_PREFIXES = (
    "CTYPE",
    "CRVAL",
    "CRPIX",
    "CDELT",
    "CUNIT",
    "CROTA",
    "CD1_",
    "CD2_",
    "PC1_",
    "PC2_",
    "PV1_",
    "PV2_",
    "A_",
    "B_",
    "AP_",
    "BP_",
    "LONPOLE",
    "LATPOLE",
    "RADESYS",
    "EQUINOX",
    "WCSAXES",
    "MJDREF",
    "DATEREF",
)


_WCS_CONTEXT = ("NAXIS", "DATE", "MJD", "WCS", "RADECSYS", "EPOCH", "OBSGEO", "TIME", "TSTART")


def _wcs_cards(header: fits.Header) -> fits.Header:
    """``header`` itself, or for a long header only its WCS cards.

    ``WCS(header)`` serialises and re-parses every card; for a header of many thousands of
    cards (hostile or not) that costs seconds, so only the cards a WCS can use are passed.
    """
    if len(header) <= 1000:
        return header
    return fits.Header(
        [
            card
            for card in header.cards
            if _is_wcs_key(card.keyword) or card.keyword.startswith(_WCS_CONTEXT)
        ]
    )


def _is_wcs_key(key: str) -> bool:
    return key.upper().startswith(_WCS_PREFIXES)
