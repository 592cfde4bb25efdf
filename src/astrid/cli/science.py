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

Both read the science image of each file (an HDU named SCI, else the first 2-D image). A
file of several images (a mosaic's CCDs, or HST's two chips ``SCI,1``/``SCI,2``) needs the
image named: ``--hdu`` picks it in both files (an index such as ``4``, an EXTNAME such as
``N4``, or EXTNAME,EXTVER such as ``SCI,2``); ``--new-hdu``/``--ref-hdu`` pick it in one
file (and win over ``--hdu``). The MASK/BPM/DQ plane read beside a picked image is its own
(``N4_MASK``, ``DQ,2``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from astropy.io import fits

from astrid.cli.app import app
from astrid.cli.lean import lean_imports
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


_HDU_HELP = "HDU of both files: index, EXTNAME or EXTNAME,EXTVER (4, N4, SCI,2)"


def _hdu(text: str | None) -> int | str | None:
    """An ``--hdu`` value: an index (``4``) or a name (``N4``, ``SCI,2``: read_image's)."""
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else text


def _read_with_wcs(path: Path, hdu: str | None = None) -> FitsImage:
    image = read_image(path, _hdu(hdu), validate=True)
    _ = image.wcs  # raises NoCelestialWCSError when absent
    return image


def _read_pair(
    new: Path, ref: Path, hdu: str | None, new_hdu: str | None, ref_hdu: str | None
) -> tuple[FitsImage, FitsImage, np.ndarray | None, np.ndarray | None]:
    """Both images (each file's own ``--new-hdu``/``--ref-hdu``, else ``--hdu``, else its
    science image) and each file's MASK/BPM/DQ extension, as the library reads it from a
    path (an image read first, for its clear errors, would otherwise lose it): for a picked
    HDU, the plane that belongs to it."""
    from astrid.science.prepared_reference import file_mask_of

    pick_new, pick_ref = new_hdu or hdu, ref_hdu or hdu
    new_img, ref_img = _read_with_wcs(new, pick_new), _read_with_wcs(ref, pick_ref)
    new_mask = file_mask_of(new, new_img.data.shape, new_img.hdu_index if pick_new else None,
                            new_img.header)  # fmt: skip
    ref_mask = file_mask_of(ref, ref_img.data.shape, ref_img.hdu_index if pick_ref else None,
                            ref_img.header)  # fmt: skip
    return new_img, ref_img, new_mask, ref_mask


@app.command()
def subtract(
    new: Path = typer.Argument(..., exists=True, dir_okay=False, help="new image (FITS + WCS)"),
    ref: Path = typer.Argument(..., exists=True, dir_okay=False, help="reference (FITS + WCS)"),
    output: Path = typer.Option(..., "-o", "--output", help="output FITS file"),
    method: str = typer.Option("zogy", "--method", help="zogy or classic"),
    force_filter: bool = typer.Option(False, "--force-filter", help="allow different filters"),
    hdu: str | None = typer.Option(None, "--hdu", help=_HDU_HELP),
    new_hdu: str | None = typer.Option(None, "--new-hdu", help="HDU of NEW (wins over --hdu)"),
    ref_hdu: str | None = typer.Option(None, "--ref-hdu", help="HDU of REF (wins over --hdu)"),
) -> None:
    """Subtract REF from NEW (aligned onto REF's grid) and write D, S_corr and the PSFs."""
    _check_method(method)
    with lean_imports():
        from astrid.science.difference import subtract_pair

    try:
        new_img, ref_img, new_mask, ref_mask = _read_pair(new, ref, hdu, new_hdu, ref_hdu)
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
    hdu: str | None = typer.Option(None, "--hdu", help=_HDU_HELP),
    new_hdu: str | None = typer.Option(None, "--new-hdu", help="HDU of NEW (wins over --hdu)"),
    ref_hdu: str | None = typer.Option(None, "--ref-hdu", help="HDU of REF (wins over --hdu)"),
) -> None:
    """Align, subtract, extract, filter and score; write one CSV row per candidate."""
    _check_method(method)
    if not threshold > 0:
        typer.echo("error: --threshold must be positive", err=True)
        raise typer.Exit(2)
    with lean_imports():
        from astrid.science.difference import detect_pair

    try:
        new_img, ref_img, new_mask, ref_mask = _read_pair(new, ref, hdu, new_hdu, ref_hdu)
        table = detect_pair(new_img, ref_img, method, threshold=threshold,
                            min_score=min_score, force_filter=force_filter,
                            new_mask=new_mask, ref_mask=ref_mask)  # fmt: skip
    except AstridError as exc:
        raise _fail(exc) from None
    table.meta.clear()
    table.write(output, format="ascii.csv", overwrite=True)
    typer.echo(f"wrote {len(table)} candidate(s) to {output}")
