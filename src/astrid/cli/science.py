"""Differencing commands: ``astrid subtract`` and ``astrid detect`` (a stable contract).

``astrid subtract NEW.fits REF.fits -o OUT.fits [--method zogy|classic]`` writes a FITS file
whose HDUs (all on the reference's pixel grid and WCS) are:

=========  ===============================================================================
EXTNAME    content
=========  ===============================================================================
PRIMARY    no data; header: ASTMETH (method), FLXRATIO (F_n/F_r), SCORSCAL, NOTEi
D          the difference image (zogy: proper difference, unit white noise; classic:
           decorrelated difference in reference units)
SCORR      detection significance in sigma (zogy: S_corr)
FLUX       PSF flux of a point source at each pixel, reference units
FLUX_ERR   its 1-sigma error
MASK       uint8, 1 = excluded
PSF_D      PSF of D
PSF_NEW    PSF of the new image (as resampled)
PSF_REF    PSF of the reference
=========  ===============================================================================

``astrid detect NEW.fits REF.fits -o candidates.csv [--method zogy|classic] [--threshold 5]``
writes one CSV row per candidate with the columns of
:data:`astrid.science.extract.CANDIDATE_COLUMNS` (``ra,dec,x,y,snr,sign,flux,flux_err,mag,
...,score``). Both exit with status 1 and a one-line message on bad input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from astropy.io import fits

from astrid.cli.app import app
from astrid.errors import AstridError
from astrid.science.fitsio import FitsImage, read_image

__all__ = ["detect", "subtract"]

_METHODS = ("zogy", "classic")


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _check_method(method: str) -> None:
    if method not in _METHODS:
        typer.echo(f"error: unknown method {method!r} (use zogy or classic)", err=True)
        raise typer.Exit(2)


def _read_with_wcs(path: Path) -> FitsImage:
    image = read_image(path)
    _ = image.wcs  # raises NoCelestialWCSError when absent
    return image


def _file_masks(
    new: Path, new_img: FitsImage, ref: Path, ref_img: FitsImage
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each file's MASK/BPM/DQ extension, as the library reads it from a path (an image
    read first, for its clear errors, would otherwise lose it)."""
    from astrid.science.prepared_reference import file_mask_of

    return file_mask_of(new, new_img.data.shape), file_mask_of(ref, ref_img.data.shape)


@app.command()
def subtract(
    new: Path = typer.Argument(..., exists=True, dir_okay=False, help="new image (FITS + WCS)"),
    ref: Path = typer.Argument(..., exists=True, dir_okay=False, help="reference (FITS + WCS)"),
    output: Path = typer.Option(..., "-o", "--output", help="output FITS file"),
    method: str = typer.Option("zogy", "--method", help="zogy or classic"),
    force_filter: bool = typer.Option(False, "--force-filter", help="allow different filters"),
) -> None:
    """Subtract REF from NEW (aligned onto REF's grid) and write D, S_corr and the PSFs."""
    _check_method(method)
    from astrid.science.difference import subtract_pair

    try:
        new_img, ref_img = _read_with_wcs(new), _read_with_wcs(ref)
        new_mask, ref_mask = _file_masks(new, new_img, ref, ref_img)
        result, pair = subtract_pair(new_img, ref_img, method, force_filter=force_filter,
                                     new_mask=new_mask, ref_mask=ref_mask)  # fmt: skip
    except AstridError as exc:
        raise _fail(exc) from None
    assert pair.wcs is not None
    wcs_header = pair.wcs.to_header(relax=True)
    primary = fits.PrimaryHDU()
    primary.header["ASTMETH"] = (method, "differencing method")
    primary.header["FLXRATIO"] = (result.flux_ratio, "F_n/F_r, new over reference flux scale")
    primary.header["SCORSCAL"] = (result.score_scale, "empirical score renormalisation")
    primary.header["NEWFILE"] = new.name[:68]
    primary.header["REFFILE"] = ref.name[:68]
    for i, note in enumerate(result.notes):
        primary.header[f"NOTE{i}"] = note[:68]
    hdus = [primary]
    for name, arr in (
        ("D", result.diff),
        ("SCORR", result.score),
        ("FLUX", result.flux),
        ("FLUX_ERR", result.flux_err),
        ("MASK", result.mask.astype(np.uint8)),
    ):
        hdus.append(fits.ImageHDU(arr, header=wcs_header, name=name))
    hdus.append(fits.ImageHDU(result.psf, name="PSF_D"))
    hdus.append(fits.ImageHDU(result.new_psf.array, name="PSF_NEW"))
    hdus.append(fits.ImageHDU(result.ref_psf.array, name="PSF_REF"))
    fits.HDUList(hdus).writeto(output, overwrite=True)
    typer.echo(f"wrote {output} ({method}, flux ratio {result.flux_ratio:.4g})")
    for note in result.notes:
        typer.echo(f"note: {note}")


@app.command()
def detect(
    new: Path = typer.Argument(..., exists=True, dir_okay=False, help="new image (FITS + WCS)"),
    ref: Path = typer.Argument(..., exists=True, dir_okay=False, help="reference (FITS + WCS)"),
    output: Path = typer.Option(..., "-o", "--output", help="output CSV file"),
    method: str = typer.Option("zogy", "--method", help="zogy or classic"),
    threshold: float = typer.Option(5.0, "--threshold", help="detection threshold in sigma"),
    min_score: float = typer.Option(0.0, "--min-score", help="drop candidates scored below"),
    force_filter: bool = typer.Option(False, "--force-filter", help="allow different filters"),
) -> None:
    """Align, subtract, extract, filter and score; write one CSV row per candidate."""
    _check_method(method)
    if not threshold > 0:
        typer.echo("error: --threshold must be positive", err=True)
        raise typer.Exit(2)
    from astrid.science.difference import detect_pair

    try:
        new_img, ref_img = _read_with_wcs(new), _read_with_wcs(ref)
        new_mask, ref_mask = _file_masks(new, new_img, ref, ref_img)
        table = detect_pair(new_img, ref_img, method, threshold=threshold,
                            min_score=min_score, force_filter=force_filter,
                            new_mask=new_mask, ref_mask=ref_mask)  # fmt: skip
    except AstridError as exc:
        raise _fail(exc) from None
    table.meta.clear()
    table.write(output, format="ascii.csv", overwrite=True)
    typer.echo(f"wrote {len(table)} candidate(s) to {output}")
