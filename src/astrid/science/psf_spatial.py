"""PSFs that vary across the field: one empirical PSF per cell of a regular grid.

Real PSFs change over a detector (focus, optics, atmosphere), differently in each epoch.
ZOGY handles that with sub-images (Zackay et al. 2016, section 6), each with its own PSF.
:func:`fit_psf_polynomial` models the PSF as PSFEx does: every pixel of the (recentred,
unit-sum) star stamps is a polynomial of the star's position, of degree 1 (10-39 usable
stars) or 2 (40 or more), fitted by S/N²-weighted least squares with one round of rejecting
stars that do not fit. :func:`estimate_psf_grid` cuts the image into cells of about
``cell`` pixels and gives each cell the polynomial PSF at its centre (``method="polynomial"``);
with too few stars for a polynomial, each cell stacks the stars within it and a margin
around it (:func:`astrid.science.psf_estimate.estimate_psf`), and a cell with too few of those takes
the whole-image PSF (``method="whole-image"``, the reason saying so).
:attr:`PSFGrid.varies` says whether the cells differ from the whole-image PSF by more than
the tolerances (FWHM by ``fwhm_tol``, either ellipticity component by ``e_tol``);
:func:`astrid.science.zogy.zogy` then differences per cell, each with its own pair of PSFs.

Positions and sizes are in pixels; PSF arrays as in :mod:`astrid.science.psf`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from astrid.science.psf import PSFEstimate, recentre_psf
from astrid.science.psf_estimate import estimate_psf, star_stamps
from astrid.science.psf_model import psf_moments
from astrid.science.psf_stars import StarList

__all__ = ["PSFGrid", "PSFPolynomial", "estimate_psf_grid", "fit_psf_polynomial"]


@dataclass(frozen=True)
class PSFGrid:
    """PSFs on a regular grid of cells.

    Attributes
    ----------
    y_edges, x_edges : tuple of int
        Cell boundaries in pixels: cell ``(i, j)`` covers rows ``y_edges[i]:y_edges[i+1]``
        and columns ``x_edges[j]:x_edges[j+1]``.
    cells : tuple of tuple of PSFEstimate
        ``cells[i][j]`` is the PSF of cell ``(i, j)`` (all of the same odd size).
    whole : PSFEstimate
        The whole-image PSF.
    fwhm_tol, e_tol : float
        Tolerances used by :attr:`varies`.
    """

    y_edges: tuple[int, ...]
    x_edges: tuple[int, ...]
    cells: tuple[tuple[PSFEstimate, ...], ...]
    whole: PSFEstimate
    fwhm_tol: float = 0.03
    e_tol: float = 0.03

    @property
    def shape(self) -> tuple[int, int]:
        """Number of cells (rows, columns)."""
        return len(self.y_edges) - 1, len(self.x_edges) - 1

    def moments(self) -> np.ndarray:
        """(rows, cols, 3) array of :func:`psf_moments` (FWHM, e1, e2) per cell."""
        return np.array([[psf_moments(c.array) for c in row] for row in self.cells])

    @property
    def n_own(self) -> int:
        """Cells whose PSF was built from their own stars."""
        return sum(1 for row in self.cells for c in row if c.method != "whole-image")

    @property
    def varies(self) -> bool:
        """Whether some cell's own PSF differs from the whole-image PSF beyond tolerance."""
        f0, e10, e20 = psf_moments(self.whole.array)
        for row in self.cells:
            for c in row:
                if c.method == "whole-image":
                    continue
                f, e1, e2 = psf_moments(c.array)
                if abs(f / f0 - 1.0) > self.fwhm_tol or max(abs(e1 - e10), abs(e2 - e20)) > (
                    self.e_tol
                ):
                    return True
        return False

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        """Cell ``(i, j)`` holding pixel ``(x, y)`` (clipped to the grid)."""
        i = int(np.clip(np.searchsorted(self.y_edges, y, side="right") - 1, 0, self.shape[0] - 1))
        j = int(np.clip(np.searchsorted(self.x_edges, x, side="right") - 1, 0, self.shape[1] - 1))
        return i, j

    def at(self, x: float, y: float) -> PSFEstimate:
        """The PSF of the cell holding pixel ``(x, y)``."""
        i, j = self.cell_of(x, y)
        return self.cells[i][j]


@dataclass(frozen=True)
class PSFPolynomial:
    """A PSF whose every pixel is a polynomial of position (PSFEx-like).

    Attributes
    ----------
    coeffs : numpy.ndarray
        Shape (n_terms, size, size): the PSF images multiplying each term.
    degree : int
        Polynomial degree (0, 1 or 2).
    centre, scale : tuple of float
        Position normalisation: ``u = (x - centre[0]) / scale[0]``, ``v = (y - centre[1]) /
        scale[1]`` (pixels).
    n_stars : int
        Stars the fit used.
    """

    coeffs: np.ndarray
    degree: int
    centre: tuple[float, float]
    scale: tuple[float, float]
    n_stars: int

    def at(self, x: float, y: float) -> np.ndarray:
        """The PSF at pixel ``(x, y)``: shape (size, size), float32, unit sum, centred."""
        u = (x - self.centre[0]) / self.scale[0]
        v = (y - self.centre[1]) / self.scale[1]
        terms = _terms(np.array([u]), np.array([v]), self.degree)[0]
        psf = np.tensordot(terms, self.coeffs, axes=1)
        h = psf.shape[0] // 2
        yy, xx = np.mgrid[-h : h + 1, -h : h + 1]
        psf = np.where(np.hypot(xx, yy) > h + 0.5, 0.0, psf)
        psf = np.clip(psf, -0.02 * psf.max(), None)
        return recentre_psf(psf)


def _terms(u: np.ndarray, v: np.ndarray, degree: int) -> np.ndarray:
    cols = [np.ones_like(u)]
    if degree >= 1:
        cols += [u, v]
    if degree >= 2:
        cols += [u * u, u * v, v * v]
    return np.stack(cols, axis=1)


def fit_psf_polynomial(
    image: np.ndarray,
    mask: np.ndarray | None,
    stars: StarList,
    size: int,
    *,
    degree: int | None = None,
    min_stars: int = 10,
) -> PSFPolynomial | None:
    """Fit a position-dependent PSF to the usable stars of an image.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image, shape (ny, nx).
    mask : numpy.ndarray of bool, optional
        True = excluded, shape (ny, nx).
    stars : StarList
        Stars of the image; those marked ``usable`` are fitted.
    size : int
        PSF side in pixels (odd).
    degree : int, optional
        Polynomial degree; default 1 with fewer than 40 stars, else 2.
    min_stars : int
        Fewest clean stars for a fit (None is returned below it).

    Returns
    -------
    PSFPolynomial or None
    """
    ny, nx = image.shape
    half = size // 2
    sel = stars.usable & (stars.x > half + 1) & (stars.y > half + 1)
    sel &= (stars.x < nx - half - 2) & (stars.y < ny - half - 2)
    cut = star_stamps(image, mask, stars, np.flatnonzero(sel), size)
    if cut is None or cut[0].shape[0] < min_stars:
        return None
    stamps, weights, kept = cut
    k = stamps.shape[0]
    if degree is None:
        degree = 1 if k < 40 else 2
    centre, scale = ((nx - 1) / 2.0, (ny - 1) / 2.0), (max(nx / 2.0, 1.0), max(ny / 2.0, 1.0))
    u = (stars.x[kept] - centre[0]) / scale[0]
    v = (stars.y[kept] - centre[1]) / scale[1]
    a = _terms(u, v, degree)
    w = np.minimum(weights, 200.0**2)
    flat = stamps.reshape(k, -1).astype(np.float64)
    use = np.ones(k, bool)
    coef = np.zeros((a.shape[1], flat.shape[1]))
    for _ in range(2):
        aw = a[use] * w[use, None]
        coef = np.linalg.lstsq(aw.T @ a[use], aw.T @ flat[use], rcond=None)[0]
        chi = ((flat - a @ coef) ** 2).sum(axis=1)
        new_use = chi < 5.0 * float(np.median(chi[use]))
        if new_use.sum() < min_stars or (new_use == use).all():
            break
        use = new_use
    return PSFPolynomial(coef.reshape(-1, size, size), degree, centre, scale, int(use.sum()))


def _edges(n: int, cell: int) -> tuple[int, ...]:
    k = max(1, int(round(n / max(cell, 1))))
    return tuple(int(v) for v in np.linspace(0, n, k + 1).round().astype(int))


def estimate_psf_grid(
    image: np.ndarray,
    noise: float,
    mask: np.ndarray | None,
    *,
    stars: StarList,
    whole: PSFEstimate,
    cell: int = 512,
    y_edges: tuple[int, ...] | None = None,
    x_edges: tuple[int, ...] | None = None,
    margin: int | None = None,
    min_stars: int = 8,
    saturation: float | None = None,
    fwhm_tol: float = 0.03,
    e_tol: float = 0.03,
) -> PSFGrid:
    """Estimate one PSF per grid cell.

    Parameters
    ----------
    image : numpy.ndarray
        Background-subtracted image, shape (ny, nx).
    noise : float
        Background noise in image units.
    mask : numpy.ndarray of bool, optional
        True = excluded, shape (ny, nx).
    stars : StarList
        Stars of the image (:func:`astrid.science.psf_stars.find_stars`).
    whole : PSFEstimate
        Whole-image PSF (sets the size of every cell's PSF, and is the fallback).
    cell : int
        Approximate cell side in pixels (ignored where ``y_edges``/``x_edges`` are given).
    y_edges, x_edges : tuple of int, optional
        Explicit cell boundaries (e.g. the sub-images of a ZOGY run).
    margin : int, optional
        Stars up to this many pixels outside a cell also count for it (default: twice the
        PSF size).
    min_stars : int
        Fewest usable stars for a cell's own stacked PSF (when there are too few stars in
        the image for a polynomial model).
    saturation : float, optional
        Saturation level above background (stars near it are not used).
    fwhm_tol, e_tol : float
        Tolerances of :attr:`PSFGrid.varies`.

    Returns
    -------
    PSFGrid
    """
    ny, nx = image.shape
    ye = y_edges if y_edges is not None else _edges(ny, cell)
    xe = x_edges if x_edges is not None else _edges(nx, cell)
    m = 2 * whole.size if margin is None else int(margin)
    single = len(ye) == 2 and len(xe) == 2
    fixed = single or whole.fallback or whole.method == "given"
    poly = None
    if not fixed and whole.method != "epsf":
        poly = fit_psf_polynomial(image, mask, stars, whole.size, min_stars=10)
    rows: list[tuple[PSFEstimate, ...]] = []
    for y0, y1 in itertools.pairwise(ye):
        row: list[PSFEstimate] = []
        for x0, x1 in itertools.pairwise(xe):
            if fixed:
                row.append(whole)
                continue
            if poly is not None:
                arr = poly.at((x0 + x1 - 1) / 2.0, (y0 + y1 - 1) / 2.0)
                f, _, _ = psf_moments(arr)
                row.append(PSFEstimate(arr, f, poly.n_stars, False, "", "polynomial"))
                continue
            region = (
                slice(max(0, y0 - m), min(ny, y1 + m)),
                slice(max(0, x0 - m), min(nx, x1 + m)),
            )
            local = estimate_psf(image, noise, mask, stars=stars, size=whole.size,
                                 saturation=saturation, min_stars=min_stars,
                                 region=region)  # fmt: skip
            if local.fallback:
                reason = f"cell ({y0}:{y1}, {x0}:{x1}): {local.reason}; whole-image PSF used"
                local = PSFEstimate(whole.array, whole.fwhm, whole.n_stars, False, reason,
                                    "whole-image")  # fmt: skip
            row.append(local)
        rows.append(tuple(row))
    return PSFGrid(tuple(ye), tuple(xe), tuple(rows), whole, fwhm_tol, e_tol)
