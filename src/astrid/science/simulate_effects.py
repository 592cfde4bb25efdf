"""Effects the simulator adds on top of stars and noise: galaxies, charge bleeding, trails.

* :func:`galaxy_stamp` — an elliptical exponential disk (Sérsic n = 1) integrated over pixels
  and convolved with the exposure's PSF at the galaxy's position: the faint hosts that
  transients sit on and that a wrong PSF model leaves residuals of.
* :func:`bleed_columns` — a CCD's response to over-full wells: the charge above saturation
  flows along the column (half up, half down) into neighbouring pixels until each is full,
  which draws the bleed trails of bright stars.
* :func:`satellite_trail` — a satellite crossing the field during the exposure: a straight
  trail from border to border, continuous or dotted (a glinting, tumbling satellite).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bleed_columns", "galaxy_stamp", "satellite_trail"]

_OVERSAMPLE = 5
_B1 = 1.678  # Sérsic b_n for n = 1: half the light inside r_eff


def galaxy_stamp(
    x: float,
    y: float,
    r_eff: float,
    ellipticity: float,
    angle: float,
    psf_kernel: np.ndarray,
) -> tuple[np.ndarray, int, int]:
    """Unit-sum image of a PSF-convolved exponential disk centred at pixel (x, y).

    Parameters
    ----------
    x, y : float
        Centre in image pixels (0-based).
    r_eff : float
        Half-light radius along the major axis in pixels (> 0).
    ellipticity : float
        ``1 - b/a`` in [0, 0.9).
    angle : float
        Major-axis position angle, degrees counter-clockwise from +x.
    psf_kernel : numpy.ndarray
        Unit-sum PSF of odd size at the galaxy's position.

    Returns
    -------
    stamp : numpy.ndarray
        Shape (n, n), float64, sums to 1.
    x0, y0 : int
        Image pixel of the stamp's [0, 0] element.
    """
    r = int(math.ceil(6.0 * r_eff)) + psf_kernel.shape[0] // 2 + 2
    n = 2 * r + 1
    ix, iy = int(round(x)), int(round(y))
    sub = (np.arange(n * _OVERSAMPLE) + 0.5) / _OVERSAMPLE - 0.5 - r
    dx, dy = sub[None, :] + (ix - x), sub[:, None] + (iy - y)
    t = math.radians(angle)
    u = dx * math.cos(t) + dy * math.sin(t)
    v = -dx * math.sin(t) + dy * math.cos(t)
    q = 1.0 - ellipticity
    rr = np.sqrt(u**2 + (v / q) ** 2)
    fine = np.exp(-_B1 * rr / r_eff)
    disk = fine.reshape(n, _OVERSAMPLE, n, _OVERSAMPLE).sum(axis=(1, 3))
    disk /= disk.sum()
    # FFT convolution with numpy (scipy.signal.fftconvolve would cost its 2.5 s import)
    k = psf_kernel.shape[0]
    m = n + k - 1
    full = np.fft.irfft2(np.fft.rfft2(disk, (m, m)) * np.fft.rfft2(psf_kernel, (m, m)), (m, m))
    h = k // 2
    out = np.clip(full[h : h + n, h : h + n], 0.0, None)
    out /= out.sum()
    return out, ix - r, iy - r


def bleed_columns(data: np.ndarray, saturation: float) -> np.ndarray:
    """Move charge above ``saturation`` along columns, in place; return the bleed mask.

    Each vertical run of over-full pixels is clipped to ``saturation`` and its excess charge
    is shared between the pixels above and below the run, each filled to ``saturation``
    before the next receives any. Charge that reaches the edge of the chip is lost.

    Parameters
    ----------
    data : numpy.ndarray
        Image (ny, nx) in ADU, before clipping; modified in place.
    saturation : float
        Full-well level in ADU.

    Returns
    -------
    numpy.ndarray
        Bool (ny, nx): pixels that are saturated or received bled charge.
    """
    ny, _ = data.shape
    bled = data >= saturation
    for col in np.flatnonzero(bled.any(axis=0)):
        c = data[:, col]
        over = c > saturation
        edges = np.flatnonzero(np.diff(np.concatenate([[0], over.view(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            excess = float((c[a:b] - saturation).sum())
            c[a:b] = saturation
            for start, step in ((b, 1), (a - 1, -1)):
                left, p = excess / 2.0, start
                while left > 0 and 0 <= p < ny:
                    add = min(max(saturation - c[p], 0.0), left)
                    c[p] += add
                    left -= add
                    bled[p, col] = True
                    p += step
    return bled


def satellite_trail(
    rng: np.random.Generator,
    shape: tuple[int, int],
    edge: float,
    spacing: float,
) -> np.ndarray:
    """Positions of the light of one satellite trail crossing an image, one row per spot.

    A satellite crosses a CCD in well under a second, so within one exposure its trail runs
    from border to border: a straight line (a great circle) through a uniform random point
    of the image at a uniform random angle, clipped to ``edge`` pixels inside the borders.
    It is drawn as spots ``spacing`` pixels apart: a continuous trail when ``spacing`` is
    below the PSF's FWHM (the PSF fills the gaps), a dotted trail (a tumbling, glinting
    satellite) when larger.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random source.
    shape : tuple of int
        ``(ny, nx)`` of the image.
    edge : float
        Margin from the borders, pixels.
    spacing : float
        Distance between spots along the trail, pixels (> 0).

    Returns
    -------
    numpy.ndarray
        Shape ``(k, 2)``: ``x, y`` of each spot (0-based pixels), in order along the trail;
        at least two spots.
    """
    ny, nx = shape
    lo_x, hi_x, lo_y, hi_y = edge, nx - 1 - edge, edge, ny - 1 - edge
    x0, y0 = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    ang = rng.uniform(0.0, math.pi)
    ux, uy = math.cos(ang), math.sin(ang)
    # the parameter range of x0 + t u inside the box [lo, hi]^2 (slab intersection)
    t_lo, t_hi = -math.inf, math.inf
    for p0, u, lo, hi in ((x0, ux, lo_x, hi_x), (y0, uy, lo_y, hi_y)):
        if abs(u) < 1e-12:
            continue
        a, b = (lo - p0) / u, (hi - p0) / u
        t_lo, t_hi = max(t_lo, min(a, b)), min(t_hi, max(a, b))
    phase = rng.uniform(0.0, spacing)
    t = np.arange(t_lo + phase, t_hi, spacing)
    if len(t) < 2:
        t = np.array([t_lo, t_hi])
    return np.column_stack([x0 + t * ux, y0 + t * uy])
