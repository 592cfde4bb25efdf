"""AstrID's own sky as a HiPS: the active reference images written as HEALPix tiles.

The sky map of the dashboard (Aladin Lite) needs a survey to draw. A deployment without
internet has none, so AstrID builds one from its own reference images with ``reproject``'s
HiPS writer (:func:`reproject.hips.reproject_to_hips`): FITS tiles (float32, ``BITPIX=-32``)
``Norder{k}/Dir{d}/Npix{n}.fits`` in the equatorial frame, a ``properties`` file and the
lower orders down to 0. ``astrid serve`` serves the folder at ``/hips/astrid/``.

* :func:`build_reference_hips` builds (or skips, when nothing changed) the tile set under
  ``<data_dir>/hips/astrid``. Each reference is written as its own HiPS at one common order
  (the finest any reference needs), then the tiles are merged: where references overlap a
  pixel holds their mean. The new set replaces the old one in one rename.
* :func:`hips_is_stale` says whether the active references differ from those of the built set
  (``astrid-build.json`` in the folder lists them), so a new reference means a rebuild.
"""

from __future__ import annotations

import io
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs.utils import proj_plane_pixel_scales
from astropy_healpix import nside_to_pixel_resolution
from sqlalchemy import select

from astrid.errors import AstridError
from astrid.runtime import Runtime
from astrid.science.fitsio import celestial_wcs
from astrid.settings import Settings
from astrid.store.tables import Reference

__all__ = [
    "HIPS_URL_PATH",
    "HipsBuild",
    "NoReferencesError",
    "build_reference_hips",
    "hips_directory",
    "hips_is_stale",
    "hips_order_for",
]

HIPS_URL_PATH = "/hips/astrid"
"""Where ``astrid serve`` serves the tile set (the ``properties`` file is below it)."""
MANIFEST = "astrid-build.json"
TILE_SIZE = 512
"""Tile width in pixels (HiPS' usual 512)."""


class NoReferencesError(AstridError):
    """There is no active reference image to build the HiPS from."""


@dataclass(frozen=True)
class HipsBuild:
    """What :func:`build_reference_hips` did.

    ``order``: the deepest HiPS order (``hips_order``); ``n_tiles``: FITS tiles over all
    orders; ``rebuilt``: False when the existing set was already up to date.
    """

    path: Path
    n_references: int
    order: int
    n_tiles: int
    rebuilt: bool


def hips_directory(settings: Settings) -> Path:
    """``<data_dir>/hips/astrid``: the served tile set."""
    return settings.data_dir / "hips" / "astrid"


def _active_references(runtime: Runtime) -> list[tuple[int, str]]:
    with runtime.require_migrated().session() as session:
        rows = session.execute(
            select(Reference.id, Reference.blob_key)
            .where(Reference.is_active)
            .order_by(Reference.id)
        ).all()
    return [(int(r[0]), str(r[1])) for r in rows]


def _built_with(folder: Path) -> list[list[Any]] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
        return [list(item) for item in data["references"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def hips_is_stale(runtime: Runtime) -> bool:
    """True when no tile set exists or the active references changed since it was built."""
    folder = hips_directory(runtime.settings)
    if not (folder / "properties").is_file():
        return True
    return _built_with(folder) != [list(r) for r in _active_references(runtime)]


def hips_order_for(pixel_scale_deg: float, tile_size: int = TILE_SIZE) -> int:
    """The HiPS order whose tile pixels are at least as fine as ``pixel_scale_deg``.

    A tile of order ``k`` is ``tile_size`` pixels across one HEALPix cell of order ``k``,
    so its pixels are cells of order ``k + log2(tile_size)``; that cell size must not exceed
    the image pixel (reproject's own rule, made explicit: the next finer order).
    """
    for order in range(0, 30):
        nside = 2**order * tile_size
        if nside_to_pixel_resolution(nside).to_value(u.deg) <= pixel_scale_deg:
            return order
    raise ValueError(f"pixel scale {pixel_scale_deg} deg is finer than HiPS order 29")


def _load(runtime: Runtime, key: str) -> tuple[np.ndarray, fits.Header]:
    with fits.open(io.BytesIO(runtime.blobs.get(key))) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float32)
        header = hdul[0].header.copy()
    if data.ndim != 2:
        raise AstridError(f"reference blob {key} is not a 2-d image (shape {data.shape})")
    return data, header


def _merge_tiles(parts: list[Path], out: Path) -> int:
    """Mean of the finite pixels of every part's tile of the same name; returns tile count."""
    names: dict[Path, list[Path]] = {}
    for part in parts:
        for tile in part.glob("Norder*/Dir*/Npix*.fits"):
            names.setdefault(tile.relative_to(part), []).append(tile)
    for rel, tiles in names.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if len(tiles) == 1:
            shutil.copyfile(tiles[0], target)
            continue
        with fits.open(tiles[0]) as first:
            header = first[0].header.copy()
        stack = np.stack([fits.getdata(t).astype(np.float64) for t in tiles])
        finite = np.isfinite(stack)
        count = finite.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(finite, stack, 0.0).sum(axis=0) / count
        mean[count == 0] = np.nan
        fits.writeto(target, mean.astype(np.float32), header)
    return len(names)


def _write_properties(folder: Path, props: dict[str, Any]) -> None:
    lines = [f"{key:20s} = {value}" for key, value in props.items()]
    (folder / "properties").write_text("\n".join(lines) + "\n")


def build_reference_hips(
    runtime: Runtime, *, force: bool = False, tile_size: int = TILE_SIZE
) -> HipsBuild:
    """Build the HiPS of the active reference images under :func:`hips_directory`.

    Skipped (``rebuilt=False``) when the set is up to date and ``force`` is False. Pixel
    values are the references' own (ADU, float32), resampled bilinearly
    (``reproject_interp``, order 1). ``hips_pixel_cut`` is the 0.5-99.5 % range of the
    references' pixels, the display range Aladin Lite starts with.

    Raises
    ------
    NoReferencesError
        No active reference exists (run the pipeline first).
    """
    from reproject import reproject_interp
    from reproject.hips import reproject_to_hips

    settings = runtime.settings
    folder = hips_directory(settings)
    refs = _active_references(runtime)
    if not refs:
        raise NoReferencesError(
            "no active reference image to build the sky HiPS from",
            hint="process observations first (`astrid demo` or `astrid process`)",
        )
    if not force and not hips_is_stale(runtime):
        props = _read_properties(folder)
        n_tiles = sum(1 for _ in folder.glob("Norder*/Dir*/Npix*.fits"))
        return HipsBuild(folder, len(refs), int(props["hips_order"]), n_tiles, False)

    images = [(ref_id, *_load(runtime, key)) for ref_id, key in refs]
    scales = [float(np.min(proj_plane_pixel_scales(celestial_wcs(h)))) for _, _, h in images]
    order = hips_order_for(min(scales), tile_size)

    work = folder.parent / f".build-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        parts = []
        for ref_id, data, header in images:
            part = work / f"ref-{ref_id}"
            reproject_to_hips(
                (data, celestial_wcs(header)),
                coord_system_out="equatorial",
                reproject_function=reproject_interp,
                output_directory=str(part),
                level=order,
                tile_size=tile_size,
                order="bilinear",
            )
            parts.append(part)
        merged = work / "astrid"
        merged.mkdir()
        n_tiles = _merge_tiles(parts, merged)
        props = _read_properties(parts[-1])
        pixels = np.concatenate([d[np.isfinite(d)].ravel() for _, d, _ in images])
        lo, hi = np.percentile(pixels, [0.5, 99.5]) if pixels.size else (0.0, 1.0)
        props.update(
            {
                "creator_did": "ivo://astrid/P/reference-sky",
                "obs_title": "AstrID reference sky",
                "obs_description": f"AstrID's {len(refs)} active reference image(s)",
                "hips_builder": "AstrID (astropy/reproject)",
                "hips_order_min": "0",
                "hips_pixel_cut": f"{lo:.6g} {hi:.6g}",
                "hips_data_range": f"{np.min(pixels):.6g} {np.max(pixels):.6g}",
            }
        )
        _write_properties(merged, props)
        (merged / MANIFEST).write_text(json.dumps({"references": [list(r) for r in refs]}))
        old = folder.parent / f".old-{uuid.uuid4().hex[:8]}"
        if folder.exists():
            folder.rename(old)
        merged.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return HipsBuild(folder, len(refs), order, n_tiles, True)


def _read_properties(folder: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in (folder / "properties").read_text().splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props
