"""Catalogue providers: local files written by the simulator, Gaia only constructed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from astrid.science.catalogs import (
    CatalogError,
    CatalogProvider,
    GaiaProvider,
    LocalCatalogProvider,
    catalog_from_simulation,
)
from astrid.science.simulate_image import simulate_star_field


@pytest.fixture(scope="module")
def field():
    return simulate_star_field((200, 200), n_stars=150, seed=11, ra=45.0, dec=-20.0)


@pytest.mark.parametrize("suffix", [".csv", ".fits", ".xml", ".ecsv"])
def test_cone_search_matches_brute_force(tmp_path: Path, field, suffix: str) -> None:
    path = tmp_path / f"cat{suffix}"
    catalog_from_simulation(field.stars, path)
    provider = LocalCatalogProvider(path)
    assert isinstance(provider, CatalogProvider)
    assert len(provider) == len(field.stars)
    radius = 30.0 / 3600.0
    result = provider.cone(45.0, -20.0, radius)
    sep = SkyCoord(field.stars["ra"] * u.deg, field.stars["dec"] * u.deg).separation(
        SkyCoord(45 * u.deg, -20 * u.deg)
    )
    expected = int((sep.deg <= radius).sum())
    assert len(result) == expected > 5
    assert list(result.colnames[:3]) == ["ra", "dec", "mag"]
    assert np.all(np.diff(result["mag"]) >= 0)
    assert result["separation"].max() <= radius


def test_magnitude_limit_and_column_names(field) -> None:
    t = Table(
        {"RAJ2000": field.stars["ra"], "DEJ2000": field.stars["dec"], "Gmag": field.stars["mag"]}
    )
    provider = LocalCatalogProvider(t)
    faint_cut = float(np.median(field.stars["mag"]))
    out = provider.cone(45.0, -20.0, 0.1, mag_limit=faint_cut)
    assert len(out) == int((field.stars["mag"] <= faint_cut).sum())


def test_missing_columns_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="mag"):
        LocalCatalogProvider(Table({"ra": [1.0], "dec": [2.0]}))
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"not a table")
    with pytest.raises(CatalogError):
        LocalCatalogProvider(bad)
    with pytest.raises(CatalogError):
        LocalCatalogProvider(tmp_path / "missing.csv")
    provider = LocalCatalogProvider(Table({"ra": [1.0], "dec": [2.0], "mag": [3.0]}))
    with pytest.raises(CatalogError):
        provider.cone(1.0, 2.0, 0.0)


def test_gaia_provider_constructs_offline() -> None:
    provider = GaiaProvider(row_limit=10)
    assert isinstance(provider, CatalogProvider)
    assert provider.name == "gaia-dr3"
    with pytest.raises(CatalogError):
        provider.cone(0.0, 0.0, -1.0)
