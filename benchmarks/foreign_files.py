"""``detect_pair`` on the same pair written the ways other pipelines write FITS.

One simulated 512² pair (300 stars, 8 transients; seed 5) is the baseline. Each variant
rewrites the new image (or both) the way another archive, camera or simulator would: the
image in an extension, tile compression, scaled integers, old-style WCS keywords, a
mirrored or rotated pixel grid, coarser pixels, physical flux units, +inf bad pixels, a
mosaic, a galactic WCS, and so on. For each the table says what ``detect_pair`` did:
how many of the baseline's candidates it found again (within 1.5 px on the reference grid),
how many candidates scored ≥ 0.5, the median S/N ratio to the baseline, or the named error.

    python benchmarks/foreign_files.py            # ~1 min on one core

Results go in docs/imaging.md ("Files written by other pipelines").
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import fit_wcs_from_points

from astrid.errors import AstridError
from astrid.science.difference import detect_pair
from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated


def _bytes(*hdus: fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU) -> bytes:
    buf = io.BytesIO()
    fits.HDUList(list(hdus)).writeto(buf, output_verify="silentfix")
    return buf.getvalue()


def _with_cd(header: fits.Header, cd: np.ndarray, crpix: tuple[float, float]) -> fits.Header:
    out = header.copy()
    for key in [k for k in out if k.startswith(("CD", "PC", "CDELT", "CROTA"))]:
        del out[key]
    out["CRPIX1"], out["CRPIX2"] = float(crpix[0]), float(crpix[1])
    for i in range(2):
        for j in range(2):
            out[f"CD{i + 1}_{j + 1}"] = float(cd[i, j])
    return out


def _galactic(header: fits.Header, shape: tuple[int, int]) -> fits.Header:
    """The same pixels' sky written as a galactic TAN WCS (fitted to 32 × 32 points)."""
    ny, nx = shape
    y, x = np.mgrid[0 : ny : ny / 32, 0 : nx : nx / 32]
    gal = WCS(header).celestial.pixel_to_world(x.ravel(), y.ravel()).galactic
    fitted = fit_wcs_from_points((x.ravel(), y.ravel()), gal, projection="TAN")
    out = header.copy()
    for key in list(out):
        if key.startswith(
            (
                "CTYPE",
                "CRVAL",
                "CRPIX",
                "CDELT",
                "CUNIT",
                "RADES",
                "EQUIN",
                "CD",
                "PC",
                "LONPOLE",
                "LATPOLE",
            )
        ):
            del out[key]
    out.update(fitted.to_header())
    return out


def variants(d: np.ndarray, h: fits.Header) -> dict[str, Callable[[], bytes]]:
    ny, nx = d.shape
    w = WCS(h)
    cd, (cx, cy) = w.pixel_scale_matrix, w.wcs.crpix
    rng = np.random.default_rng(1)

    def scaled_int16() -> bytes:
        hdu = fits.PrimaryHDU(d.copy(), h.copy())
        hdu.scale("int16", bscale=0.5, bzero=16384)
        return _bytes(hdu)

    def uint16() -> bytes:
        hdr = h.copy()
        for key in ("BITPIX", "BZERO", "BSCALE"):
            hdr.remove(key, ignore_missing=True)
        return _bytes(fits.PrimaryHDU(np.clip(d, 0, 65000).astype(np.uint16), hdr))

    def inf_pixels() -> bytes:
        out = d.copy()
        out[::37, ::41] = np.inf
        return _bytes(fits.PrimaryHDU(out, h))

    def nan_pixels() -> bytes:
        out = d.copy()
        out[::37, ::41] = np.nan
        return _bytes(fits.PrimaryHDU(out, h))

    def binned() -> bytes:
        b = d.reshape(ny // 2, 2, nx // 2, 2).sum(axis=(1, 3)).astype(np.float32)
        crpix = ((cx - 0.5) / 2 + 0.5, (cy - 0.5) / 2 + 0.5)
        return _bytes(fits.PrimaryHDU(b, _with_cd(h, cd * 2, crpix)))

    def cdelt_crota() -> bytes:
        hdr = _with_cd(h, cd, (cx, cy))
        for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
            del hdr[key]
        hdr["CDELT1"], hdr["CDELT2"], hdr["CROTA2"] = float(cd[0, 0]), float(cd[1, 1]), 0.0
        return _bytes(fits.PrimaryHDU(d, hdr))

    def keyword(key: str, value: object) -> Callable[[], bytes]:
        def make() -> bytes:
            hdr = h.copy()
            hdr[key] = value
            return _bytes(fits.PrimaryHDU(d, hdr))

        return make

    def mosaic() -> bytes:
        return _bytes(
            fits.PrimaryHDU(),
            *(
                fits.ImageHDU(d + rng.normal(0, 1e-3, d.shape).astype(np.float32), h, name=n)
                for n in ("N4", "N5", "S1")
            ),
        )

    return {
        "image in extension 1 (SCI), empty primary": lambda: _bytes(
            fits.PrimaryHDU(), fits.ImageHDU(d, h, name="SCI")
        ),
        "tile-compressed (RICE_1, fpack)": lambda: _bytes(
            fits.PrimaryHDU(),
            fits.CompImageHDU(d, h, compression_type="RICE_1", quantize_level=16),
        ),
        "int16 with BSCALE/BZERO": scaled_int16,
        "uint16 (BZERO 32768)": uint16,
        "float64": lambda: _bytes(fits.PrimaryHDU(d.astype(np.float64), h)),
        "CDELT/CROTA2 instead of CD": cdelt_crota,
        "mirrored pixel grid (east right)": lambda: _bytes(
            fits.PrimaryHDU(
                d[:, ::-1].copy(), _with_cd(h, cd @ np.diag([-1.0, 1.0]), (nx + 1 - cx, cy))
            )
        ),
        "pixel grid rotated 90°": lambda: _bytes(
            fits.PrimaryHDU(
                np.rot90(d).copy(),
                _with_cd(h, cd @ np.array([[0.0, -1.0], [1.0, 0.0]]), (cy, nx + 1 - cx)),
            )
        ),
        "2×2 binned (1.0″ pixels vs 0.5″)": binned,
        "galactic TAN WCS (fitted)": lambda: _bytes(fits.PrimaryHDU(d, _galactic(h, d.shape))),
        "negative sky (background subtracted)": lambda: _bytes(
            fits.PrimaryHDU(d - np.median(d) - 50.0, h)
        ),
        "GAIN = 'unknown'": keyword("GAIN", "unknown"),
        "GAIN = 0": keyword("GAIN", 0.0),
        "SATURATE at half the sky level": keyword("SATURATE", float(np.median(d)) * 0.5),
        "182 scattered NaN pixels": nan_pixels,
        "182 scattered +inf pixels": inf_pixels,
        "three CCDs of a mosaic, no SCI name": mosaic,
    }


def _match(table, base) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    if not len(table):
        return 0, float("nan")
    found, ratios = 0, []
    for row in base:
        dist = np.hypot(table["x"] - row["x"], table["y"] - row["y"])
        k = int(np.argmin(dist))
        if dist[k] < 1.5:
            found += 1
            ratios.append(float(table["snr"][k] / row["snr"]))
    return found, float(np.median(ratios)) if ratios else float("nan")


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    p = simulate_pair((512, 512), 300, seed=5, n_transients=8, transient_flux_range=(2000, 6000))
    new_b, ref_b = write_simulated(p.new), write_simulated(p.ref)
    base = detect_pair(new_b, ref_b, "zogy")
    d = np.asarray(p.new.data, np.float32)
    h = p.new.header
    print(f"baseline: {len(base)} candidates, {int((base['score'] >= 0.5).sum())} with score ≥ 0.5")
    columns = ["new image written as", "candidates", "baseline found", "score ≥ 0.5"]
    print("| " + " | ".join([*columns, "S/N / baseline", "outcome"]) + " |")
    print("|---|---|---|---|---|---|")
    rows = list(variants(d, h).items())
    # units: both images in other units (the reference too)
    for factor in (1e-11, 1e-3, 1e9, 1e-18):

        def pair(f: float = factor) -> tuple[bytes, bytes]:
            out = []
            for img in (p.new, p.ref):
                hdr = img.header.copy()
                for key in ("SATURATE", "GAIN"):
                    hdr.remove(key, ignore_missing=True)
                out.append(_bytes(fits.PrimaryHDU((img.data * f).astype(np.float32), hdr)))
            return out[0], out[1]

        rows.append((f"both images × {factor:g} (other units)", pair))  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in rows:
            made = make()
            new, ref = made if isinstance(made, tuple) else (made, ref_b)
            path = Path(tmp) / "new.fits"
            path.write_bytes(new)
            t0 = time.perf_counter()
            try:
                table = detect_pair(path, ref, "zogy")
            except AstridError as exc:
                print(f"| {name} | – | – | – | – | {type(exc).__name__}: {exc} |")
                continue
            found, ratio = _match(table, base)
            hi = int((table["score"] >= 0.5).sum())
            print(
                f"| {name} | {len(table)} | {found}/{len(base)} | {hi} | {ratio:.3f} | "
                f"ok ({time.perf_counter() - t0:.1f} s) |"
            )


if __name__ == "__main__":
    main()
