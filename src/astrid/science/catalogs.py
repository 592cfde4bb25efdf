"""Reference star catalogues behind one small interface.

A :class:`CatalogProvider` answers a cone search with an astropy Table of ``ra``, ``dec``
(degrees, ICRS) and ``mag`` (magnitudes in the catalogue's band), brightest first.

* :class:`LocalCatalogProvider` reads a VOTable, FITS table, ECSV or CSV file (offline; used in
  tests, on clusters without network, and with catalogues written by the simulator).
* :class:`GaiaProvider` queries Gaia DR3 through ``astroquery.gaia`` (online only; it is the
  one place in the science core that touches the network, and only when :meth:`cone` runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from astrid.errors import AstridError

__all__ = [
    "CatalogError",
    "CatalogProvider",
    "CatalogQueryError",
    "GaiaProvider",
    "LocalCatalogProvider",
    "catalog_from_simulation",
]


class CatalogError(AstridError):
    """A catalogue file is unreadable or lacks the position / magnitude columns."""


class CatalogQueryError(AstridError):
    """An online catalogue query failed (network, service, bad parameters)."""


@runtime_checkable
class CatalogProvider(Protocol):
    """Anything that answers a cone search with a ``ra``, ``dec``, ``mag`` table."""

    name: str

    def cone(
        self, ra: float, dec: float, radius: float, *, mag_limit: float | None = None
    ) -> Table:
        """Sources within ``radius`` degrees of (``ra``, ``dec``) in degrees, brightest first."""
        ...


_RA_NAMES = ("ra", "raj2000", "ra_icrs", "alpha_j2000", "ra_deg", "_raj2000")
_DEC_NAMES = ("dec", "dej2000", "de_icrs", "delta_j2000", "dec_deg", "_dej2000")
_MAG_NAMES = ("mag", "phot_g_mean_mag", "gmag", "rmag", "imag", "magnitude", "mag_auto")


def _find(colnames: Sequence[str], options: Sequence[str], wanted: str | None) -> str | None:
    if wanted is not None:
        return wanted if wanted in colnames else None
    lower = {c.lower(): c for c in colnames}
    for name in options:
        if name in lower:
            return lower[name]
    return None


def _standardise(table: Table, ra_col: str, dec_col: str, mag_col: str) -> Table:
    out = Table(
        {
            "ra": np.asarray(table[ra_col], dtype=float) % 360.0,
            "dec": np.asarray(table[dec_col], dtype=float),
            "mag": np.asarray(table[mag_col], dtype=float),
        }
    )
    good = np.isfinite(out["ra"]) & np.isfinite(out["dec"]) & np.isfinite(out["mag"])
    out = out[good]
    out.sort("mag")
    return out


class LocalCatalogProvider:
    """Cone searches over a catalogue file.

    Parameters
    ----------
    source : str, pathlib.Path or astropy.table.Table
        A VOTable (``.xml``/``.vot``), FITS table, ECSV or CSV file, or a Table.
    ra_col, dec_col, mag_col : str, optional
        Column names; by default the usual spellings (``ra``/``RAJ2000``/``ra_icrs`` ...,
        ``mag``/``phot_g_mean_mag`` ...) are looked up case-insensitively.
    name : str
        Label of the catalogue.

    Raises
    ------
    CatalogError
        If the file cannot be read or lacks a position or magnitude column.
    """

    def __init__(
        self,
        source: str | Path | Table,
        *,
        ra_col: str | None = None,
        dec_col: str | None = None,
        mag_col: str | None = None,
        name: str = "local",
    ) -> None:
        self.name = name
        if isinstance(source, Table):
            table = source
        else:
            path = Path(source)
            if not path.is_file():
                raise CatalogError(f"catalogue file {path} does not exist")
            table = self._read(path)
        ra = _find(table.colnames, _RA_NAMES, ra_col)
        dec = _find(table.colnames, _DEC_NAMES, dec_col)
        mag = _find(table.colnames, _MAG_NAMES, mag_col)
        missing = [n for n, c in (("ra", ra), ("dec", dec), ("mag", mag)) if c is None]
        if missing:
            raise CatalogError(
                f"catalogue has no {'/'.join(missing)} column (columns: {table.colnames})",
                hint="name the columns with ra_col=, dec_col=, mag_col=",
            )
        assert ra is not None and dec is not None and mag is not None
        self.table = _standardise(table, ra, dec, mag)
        self._coords = SkyCoord(self.table["ra"] * u.deg, self.table["dec"] * u.deg)

    @staticmethod
    def _read(path: Path) -> Table:
        suffix = "".join(path.suffixes).lower()
        fmt: str | None = None
        if suffix.endswith((".csv", ".csv.gz")):
            fmt = "ascii.csv"
        elif suffix.endswith(".ecsv"):
            fmt = "ascii.ecsv"
        elif suffix.endswith((".xml", ".vot", ".votable")):
            fmt = "votable"
        try:
            return Table.read(path, format=fmt) if fmt else Table.read(path)
        except Exception as exc:  # astropy raises many types for unreadable tables
            raise CatalogError(
                f"cannot read catalogue {path}: {exc}",
                hint="use a VOTable, FITS table, ECSV or CSV file",
            ) from exc

    def __len__(self) -> int:
        return len(self.table)

    def cone(
        self, ra: float, dec: float, radius: float, *, mag_limit: float | None = None
    ) -> Table:
        """Sources within ``radius`` of a position.

        Parameters
        ----------
        ra, dec : float
            Centre in degrees.
        radius : float
            Radius in degrees.
        mag_limit : float, optional
            Keep sources brighter than this magnitude.

        Returns
        -------
        astropy.table.Table
            Columns ``ra``, ``dec``, ``mag``, ``separation`` (degrees), brightest first.
        """
        if not radius > 0:
            raise CatalogError(f"cone radius must be > 0 degrees, got {radius}")
        centre = SkyCoord(ra * u.deg, dec * u.deg)
        sep = centre.separation(self._coords).deg
        keep = sep <= radius
        if mag_limit is not None:
            keep &= np.asarray(self.table["mag"]) <= mag_limit
        out = self.table[keep]
        out["separation"] = sep[keep]
        return out


class GaiaProvider:
    """Gaia DR3 cone searches through ``astroquery.gaia`` (network needed).

    Parameters
    ----------
    table : str
        Gaia archive table.
    row_limit : int
        Maximum number of rows returned.
    """

    def __init__(self, table: str = "gaiadr3.gaia_source", row_limit: int = 5000) -> None:
        self.name = "gaia-dr3"
        self.table_name = table
        self.row_limit = int(row_limit)

    def cone(
        self, ra: float, dec: float, radius: float, *, mag_limit: float | None = None
    ) -> Table:
        """Gaia sources within ``radius`` degrees of (``ra``, ``dec``); ``mag`` = G.

        Raises
        ------
        CatalogQueryError
            If the archive cannot be reached or rejects the query.
        """
        if not radius > 0:
            raise CatalogError(f"cone radius must be > 0 degrees, got {radius}")
        where = f" AND phot_g_mean_mag <= {float(mag_limit)}" if mag_limit is not None else ""
        # ADQL built from floats and the configured table name, never from request text.
        query = (
            f"SELECT TOP {self.row_limit} ra, dec, phot_g_mean_mag FROM {self.table_name} "  # nosec B608
            "WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
            f"CIRCLE('ICRS', {float(ra)}, {float(dec)}, {float(radius)})){where} "
            "ORDER BY phot_g_mean_mag"
        )
        try:
            from astroquery.gaia import Gaia

            result = Gaia.launch_job(query).get_results()
        except Exception as exc:  # network / service errors of many types
            raise CatalogQueryError(
                f"Gaia query failed: {exc}",
                hint="check the network, or use LocalCatalogProvider with a saved catalogue",
            ) from exc
        out = _standardise(result, "ra", "dec", "phot_g_mean_mag")
        centre = SkyCoord(ra * u.deg, dec * u.deg)
        out["separation"] = centre.separation(SkyCoord(out["ra"] * u.deg, out["dec"] * u.deg)).deg
        return out


def catalog_from_simulation(stars: Table, path: str | Path | None = None) -> Table:
    """A ``ra``, ``dec``, ``mag`` catalogue from a simulator's ``stars`` table.

    Parameters
    ----------
    stars : astropy.table.Table
        Table with ``ra``, ``dec`` and ``mag`` (e.g. ``SimulatedImage.stars``).
    path : str or pathlib.Path, optional
        Also write it there (format from the suffix: ``.csv``, ``.fits``, ``.xml``, ``.ecsv``).

    Returns
    -------
    astropy.table.Table
    """
    out = Table({"ra": stars["ra"], "dec": stars["dec"], "mag": stars["mag"]})
    if path is not None:
        path = Path(path)
        fmt = {".csv": "ascii.csv", ".xml": "votable", ".vot": "votable", ".ecsv": "ascii.ecsv"}
        out.write(path, format=fmt.get(path.suffix.lower(), "fits"), overwrite=True)
    return out
