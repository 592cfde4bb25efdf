"""The sky HiPS built from AstrID's own reference images (reproject's HiPS writer): the tiles
exist where HEALPix puts them, the properties file is valid, a tile pixel holds the reference's
value at its sky position, the set is rebuilt only when the references change, and
``astrid serve`` serves it at /hips/astrid/."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy_healpix import HEALPix
from fastapi.testclient import TestClient
from scipy.ndimage import map_coordinates
from typer.testing import CliRunner

from astrid.pipeline.demo import simulate_demo_survey
from astrid.pipeline.hips import (
    HIPS_URL_PATH,
    NoReferencesError,
    build_reference_hips,
    hips_directory,
    hips_is_stale,
    hips_order_for,
)
from astrid.runtime import Runtime
from astrid.science.fitsio import celestial_wcs
from astrid.settings import get_settings
from astrid.store.sky_index import healpix_index
from astrid.store.tables import Reference


def _add_reference(runtime: Runtime, path: Path) -> tuple[np.ndarray, WCS]:
    """Store a simulated reference image as a blob + an active Reference row."""
    raw = path.read_bytes()
    with fits.open(path) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float64)
        wcs = celestial_wcs(hdul[0].header)
    ra, dec = wcs.wcs.crval
    key = runtime.blobs.put(raw)
    with runtime.db.session() as session:
        session.add(
            Reference(filter="r", ra=ra, dec=dec, healpix=int(healpix_index(ra, dec)), blob_key=key)
        )
    return data, wcs


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """The CLI reads settings from the environment: never a cached object of another test."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def references(runtime: Runtime, tmp_path: Path) -> list[tuple[np.ndarray, WCS]]:
    """The demo survey's reference epochs (epoch 0) of two fields."""
    survey = simulate_demo_survey(tmp_path / "sim", n_fields=2, n_epochs=2)
    refs = sorted(p for p in survey.paths if "e0" in p.stem or "ref" in p.stem)
    assert len(refs) == 2, survey.paths
    return [_add_reference(runtime, p) for p in refs]


def test_order_is_the_finest_needed() -> None:
    # 512-pixel tiles: order 10 tiles have 0.40"/px, order 9 0.81"/px, order 8 1.61"/px.
    assert hips_order_for(0.5 / 3600) == 10
    assert hips_order_for(1.0 / 3600) == 9
    assert hips_order_for(0.81 / 3600) == 9


def test_tiles_properties_and_pixel_values(
    runtime: Runtime, references: list[tuple[np.ndarray, WCS]]
) -> None:
    assert hips_is_stale(runtime)
    built = build_reference_hips(runtime)
    assert built.rebuilt and built.n_references == 2 and built.order == 10
    folder = hips_directory(runtime.settings)
    assert built.path == folder

    props = dict(
        (k.strip(), v.strip())
        for k, v in (
            line.split("=", 1) for line in (folder / "properties").read_text().splitlines()
        )
    )
    assert props["hips_tile_format"] == "fits"
    assert props["hips_frame"] == "equatorial"
    assert props["hips_order"] == "10" and props["hips_order_min"] == "0"
    assert props["hips_tile_width"] == "512"
    assert props["dataproduct_type"] == "image"
    lo, hi = (float(x) for x in props["hips_pixel_cut"].split())
    assert lo < hi

    hp = HEALPix(nside=2**10, order="nested", frame="icrs")
    for data, wcs in references:
        # A position near (not at) the image centre, on a star-free-or-not pixel alike.
        ny, nx = data.shape
        centre = wcs.pixel_to_world(nx / 2 + 7.3, ny / 2 - 11.6)
        npix = int(hp.skycoord_to_healpix(centre))
        tile = folder / f"Norder10/Dir{(npix // 10000) * 10000}/Npix{npix}.fits"
        assert tile.is_file(), sorted(p.name for p in folder.glob("Norder10/*/*"))
        with fits.open(tile) as hdul:
            tdata = np.asarray(hdul[0].data, dtype=np.float64)
            twcs = WCS(hdul[0].header)
        assert tdata.shape == (512, 512)
        # The tile pixel nearest to the position, and its centre's sky coordinates.
        tx, ty = (int(round(float(v))) for v in twcs.world_to_pixel(centre))
        sky = twcs.pixel_to_world(tx, ty)
        assert sky.separation(centre) < 0.5 * u.arcsec
        # The reference's value there, bilinear as reproject_interp(order=1) samples it.
        sx, sy = wcs.world_to_pixel(sky)
        expected = float(map_coordinates(data, [[sy], [sx]], order=1)[0])
        got = float(tdata[ty, tx])
        assert math.isfinite(got)
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-3 * float(np.std(data)))
    # Lower orders exist down to 0 and only where the references are.
    assert list(folder.glob("Norder0/Dir0/Npix*.fits"))
    assert len(list(folder.glob("Norder10/Dir*/Npix*.fits"))) <= 8

    # Up to date: not rebuilt; a new reference: stale, rebuilt.
    again = build_reference_hips(runtime)
    assert not again.rebuilt and again.n_tiles == built.n_tiles
    assert not hips_is_stale(runtime)


def test_a_new_reference_makes_it_stale(runtime: Runtime, tmp_path: Path) -> None:
    survey = simulate_demo_survey(tmp_path / "sim", n_fields=3, n_epochs=2)
    refs = sorted(p for p in survey.paths if "e0" in p.stem or "ref" in p.stem)
    _add_reference(runtime, refs[0])
    first = build_reference_hips(runtime)
    assert first.n_references == 1
    _add_reference(runtime, refs[2])
    assert hips_is_stale(runtime)
    second = build_reference_hips(runtime)
    assert second.rebuilt and second.n_references == 2 and second.n_tiles > first.n_tiles


def test_no_reference_is_a_named_error(runtime: Runtime) -> None:
    with pytest.raises(NoReferencesError, match="no active reference"):
        build_reference_hips(runtime)


def test_cli_build_and_serve(
    runtime: Runtime,
    references: list[tuple[np.ndarray, WCS]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from astrid.api import create_app
    from astrid.cli import app

    settings = runtime.settings
    monkeypatch.setenv("ASTRID_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ASTRID_DATABASE_URL", settings.resolved_database_url)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["sky", "build-hips"])
    assert result.exit_code == 0, result.output
    assert "order 10" in result.output
    result = CliRunner().invoke(app, ["sky", "build-hips"])
    assert result.exit_code == 0 and "up to date" in result.output

    client = TestClient(create_app(runtime))
    r = client.get(f"{HIPS_URL_PATH}/properties")
    assert r.status_code == 200 and "hips_tile_format" in r.text
    tile = next(hips_directory(settings).glob("Norder10/Dir*/Npix*.fits"))
    rel = tile.relative_to(hips_directory(settings)).as_posix()
    r = client.get(f"{HIPS_URL_PATH}/{rel}")
    assert r.status_code == 200 and r.content[:6] == b"SIMPLE"
    assert client.get(f"{HIPS_URL_PATH}/Norder10/Dir0/Npix1.fits").status_code == 404


def test_cli_without_references_is_one_red_line(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from astrid.cli import app

    monkeypatch.setenv("ASTRID_DATA_DIR", str(runtime.settings.data_dir))
    monkeypatch.setenv("ASTRID_DATABASE_URL", runtime.settings.resolved_database_url)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["sky", "build-hips"])
    assert result.exit_code == 2
    assert "no active reference" in result.output
    assert "Traceback" not in result.output


def test_scheduled_flow_rebuilds_only_when_the_references_change(
    runtime: Runtime, tmp_path: Path
) -> None:
    from astrid.flows.schedules import run_flow

    empty = run_flow(runtime, "sky-hips", {})
    assert empty.status == "succeeded" and empty.result["rebuilt"] is False
    assert "no active reference" in empty.result["reason"].lower()
    survey = simulate_demo_survey(tmp_path / "sim", n_fields=2, n_epochs=2)
    first, second = sorted(p for p in survey.paths if "e0" in p.stem or "ref" in p.stem)
    _add_reference(runtime, first)
    built = run_flow(runtime, "sky-hips", {})
    assert built.status == "succeeded", built.error
    assert built.result["rebuilt"] is True and built.result["n_references"] == 1
    same = run_flow(runtime, "sky-hips", {})
    assert same.result["rebuilt"] is False and "up to date" in (same.log or "")
    _add_reference(runtime, second)  # a new reference: the sky map is stale until rebuilt
    assert hips_is_stale(runtime)
    again = run_flow(runtime, "sky-hips", {})
    assert again.result == {"rebuilt": True, "n_references": 2, "n_tiles": again.result["n_tiles"]}
    assert not hips_is_stale(runtime)
    bad = run_flow(runtime, "sky-hips", {"colour": "red"})
    assert bad.status == "failed" and "unknown parameters ['colour']" in (bad.error or "")
