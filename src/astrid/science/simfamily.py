"""A family of simulated pairs that covers what real data does to image differencing.

Each :class:`SimulationCase` is one named condition; :func:`simulation_family` lists them and
:func:`simulate_case` renders one at any size (star, galaxy and transient counts scale with the
area, so a 256² test image and a 1024² benchmark image see the same densities). The cases:

============================ =============================================================
``gaussian_seeing``          round Gaussian PSFs, seeing 2.5 → 3.5 px (the old benchmark)
``moffat_elliptical``        Moffat β 2.5 / 3.5, ellipticity 0.15 at 30° vs 0.10 at −40°,
                             sub-pixel shift and 0.1° rotation
``moffat_varying``           FWHM varying ±15 % across the field, differently in each epoch
``saturation_defects``       many saturated stars (flux slope 0.5) with bleed trails, bad
                             columns, 1–6 px cosmic rays in both epochs
``crowded``                  4× the star density
``galaxy_hosts``             faint galaxies, a third of the transients on them
``on_stars``                 transients 0.5–2.5 px from bright stars, and variable stars
``held_out_like``            all of the above at once (the issue-13 held-out pair's recipe)
============================ =============================================================

The truth of every pair (``SimulatedPair.truth``: transients with ``ideal_snr`` and ``host``,
variables, cosmic rays) is what the injection-recovery benchmark and tests score against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from astrid.science.simulate import simulate_pair
from astrid.science.simulate_model import AnalyticPSF, Exposure, SimulatedPair

__all__ = [
    "RecoveryScore",
    "SimulationCase",
    "measurable_snr",
    "score_recovery",
    "simulate_case",
    "simulation_family",
]

_AREA = 1024.0 * 1024.0  # the densities below are per 1024² pixels


@dataclass(frozen=True)
class SimulationCase:
    """One named simulated condition.

    Attributes
    ----------
    name : str
        Short identifier (used in benchmark tables).
    description : str
        One line saying what the case tests.
    new, ref : Exposure
        Conditions of the two epochs.
    n_stars, n_transients, n_galaxies, n_host_transients, n_star_transients, n_variables :
        Counts per 1024² pixels.
    extra : dict
        Further keyword arguments for :func:`~astrid.science.simulate.simulate_pair`.
    """

    name: str
    description: str
    new: Exposure
    ref: Exposure
    n_stars: int = 800
    n_transients: int = 100
    n_galaxies: int = 0
    n_host_transients: int = 0
    n_star_transients: int = 0
    n_variables: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _moffat(fwhm: float, beta: float, e: float = 0.0, angle: float = 0.0, **kw: Any) -> AnalyticPSF:
    return AnalyticPSF(fwhm=fwhm, beta=beta, ellipticity=e, angle=angle, **kw)


def simulation_family() -> list[SimulationCase]:
    """The cases, in order of increasing difficulty (see the module docstring)."""
    ell_new = _moffat(3.3, 2.5, 0.15, 30.0)
    ell_ref = _moffat(2.7, 3.5, 0.10, -40.0)
    shift = {"offset": (0.37, -0.62), "rotation": 0.1}
    defects = {"cosmic_rays": 150, "bad_columns": 2, "bleed": True, "saturation": 40000.0}
    return [
        SimulationCase(
            "gaussian_seeing",
            "round Gaussian PSFs, seeing change 2.5 -> 3.5 px",
            Exposure(psf=AnalyticPSF(fwhm=3.5), mjd=60030.0),
            Exposure(psf=AnalyticPSF(fwhm=2.5)),
        ),
        SimulationCase(
            "moffat_elliptical",
            "elliptical Moffat PSFs differently oriented, sub-pixel shift",
            Exposure(psf=ell_new, mjd=60030.0, **shift),  # type: ignore[arg-type]
            Exposure(psf=ell_ref),
        ),
        SimulationCase(
            "moffat_varying",
            "Moffat PSFs whose FWHM varies across the field, differently per epoch",
            Exposure(psf=_moffat(3.2, 2.8, 0.1, 60.0, fwhm_gradient=(0.15, -0.1)), mjd=60030.0),
            Exposure(psf=_moffat(2.8, 3.2, 0.05, 0.0, fwhm_gradient=(-0.1, 0.1))),
        ),
        SimulationCase(
            "saturation_defects",
            "saturated stars with bleed trails, bad columns, multi-pixel cosmic rays",
            Exposure(psf=_moffat(3.0, 3.0), mjd=60030.0, **defects),  # type: ignore[arg-type]
            Exposure(psf=_moffat(2.6, 3.0), **defects),  # type: ignore[arg-type]
            extra={"flux_range": (100.0, 2.0e6), "flux_slope": 0.5},
        ),
        SimulationCase(
            "crowded",
            "four times the star density",
            Exposure(psf=_moffat(3.2, 3.0), mjd=60030.0),
            Exposure(psf=_moffat(2.7, 3.0)),
            n_stars=3200,
        ),
        SimulationCase(
            "galaxy_hosts",
            "faint galaxies, a third of the transients on them",
            Exposure(psf=_moffat(3.2, 3.0), mjd=60030.0),
            Exposure(psf=_moffat(2.7, 3.0)),
            n_transients=67,
            n_galaxies=200,
            n_host_transients=33,
        ),
        SimulationCase(
            "on_stars",
            "transients 0.5-2.5 px from bright stars, and variable stars",
            Exposure(psf=_moffat(3.2, 3.0), mjd=60030.0),
            Exposure(psf=_moffat(2.7, 3.0)),
            n_transients=60,
            n_star_transients=40,
            n_variables=20,
        ),
        SimulationCase(
            "held_out_like",
            "all of the above: elliptical rotated Moffats, defects, galaxies, hosts",
            Exposure(psf=ell_new, mjd=60030.0, **shift, **defects),  # type: ignore[arg-type]
            Exposure(psf=ell_ref, **defects),  # type: ignore[arg-type]
            n_stars=1600,
            n_transients=60,
            n_galaxies=150,
            n_host_transients=20,
            n_star_transients=20,
            extra={"flux_range": (100.0, 2.0e6), "flux_slope": 0.5},
        ),
    ]


def simulate_case(
    case: SimulationCase, size: int = 1024, seed: int = 0, **overrides: Any
) -> SimulatedPair:
    """Render one case as a ``size`` × ``size`` pair.

    Parameters
    ----------
    case : SimulationCase
        From :func:`simulation_family`.
    size : int
        Image side in pixels (counts scale with ``size²`` / 1024²; at least one of each kind
        that the case has).
    seed : int
        Random seed.
    **overrides
        Keyword arguments for :func:`~astrid.science.simulate.simulate_pair` that replace the
        case's (e.g. ``transient_flux_range``).

    Returns
    -------
    SimulatedPair
    """
    scale = size * size / _AREA

    def n(count: int) -> int:
        return max(1, round(count * scale)) if count > 0 else 0

    kwargs: dict[str, Any] = {
        "new": case.new,
        "ref": case.ref,
        "n_transients": n(case.n_transients),
        "n_galaxies": n(case.n_galaxies),
        "n_host_transients": n(case.n_host_transients),
        "n_star_transients": n(case.n_star_transients),
        "n_variables": n(case.n_variables),
        "transient_flux_range": (150.0, 3000.0),
        **case.extra,
        **overrides,
    }
    return simulate_pair((size, size), n(case.n_stars), seed=seed, **kwargs)


@dataclass(frozen=True)
class RecoveryScore:
    """How a candidate table compares with a simulated pair's truth.

    Attributes
    ----------
    n_strong : int
        Transients with ideal S/N ≥ ``min_ideal_snr``.
    completeness : float
        Fraction of those matched by a positive candidate (NaN without any).
    snr_ratio : float
        Median measured S/N / ideal S/N of the matched strong transients (NaN without any).
    n_false : int
        Candidates with score ≥ ``min_score`` more than ``false_radius`` px from every real
        change (transient, variable, moving object); cosmic rays count as false.
    false_per_4mpix : float
        ``n_false`` per 4 Mpix (2048²) of usable difference area.
    precision : float
        Of the candidates with score ≥ ``min_score``, the fraction that are real changes.
    n_false_near_stars : int
        False candidates within 5 px of a catalogued star.
    n_strong_masked : int
        Strong transients within 2 px of a masked pixel of either image (saturation, bleed
        trail, bad column).
    completeness_unmasked : float
        Completeness of the strong transients that are not masked.
    n_unmeasurable : int
        Strong transients whose *measurable* S/N (:func:`measurable_snr`: the ideal S/N with
        the shot noise of what lies under them, from the pixels that neither image lost) is
        below ``min_ideal_snr``: no method can reach it from these pixels.
    completeness_measurable : float
        Completeness of the strong transients that are measurable.
    """

    n_strong: int
    completeness: float
    snr_ratio: float
    n_false: int
    false_per_4mpix: float
    precision: float
    n_false_near_stars: int
    n_strong_masked: int = 0
    completeness_unmasked: float = float("nan")
    n_unmeasurable: int = 0
    completeness_measurable: float = float("nan")


def measurable_snr(pair: SimulatedPair, transients: Any) -> Any:
    """The best S/N any method can reach on each transient from the pixels that exist.

    ``ideal_snr_local`` (the ZOGY limit with the shot noise of the source and of the star or
    host under it) times ``sqrt`` of the fraction of the new PSF's ``sum P²`` that falls on
    pixels masked in neither image (saturated cores, bleed trails, bad columns lose their
    share of a matched filter's weight). Shape (n,), dimensionless.

    Parameters
    ----------
    pair : SimulatedPair
        The pair.
    transients : astropy.table.Table
        Rows of ``pair.truth`` (``x_new``, ``y_new``, ``x_ref``, ``y_ref``,
        ``ideal_snr_local``).
    """
    import numpy as np

    out = np.asarray(transients["ideal_snr_local"], float).copy()
    shape = pair.new.data.shape
    for k, t in enumerate(transients):
        p, x0, y0 = pair.new.psf.stamp(float(t["x_new"]), float(t["y_new"]), shape)
        lost = np.zeros(p.shape, bool)
        dxr = int(round(float(t["x_ref"]))) - int(round(float(t["x_new"])))
        dyr = int(round(float(t["y_ref"]))) - int(round(float(t["y_new"])))
        for img, ox, oy in ((pair.new, x0, y0), (pair.ref, x0 + dxr, y0 + dyr)):
            ny, nx = img.mask.shape
            yy, xx = np.mgrid[oy : oy + p.shape[0], ox : ox + p.shape[1]]
            inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
            lost[inside] |= img.mask[yy[inside], xx[inside]]
        w = p**2
        out[k] *= float(np.sqrt(w[~lost].sum() / w.sum()))
    return out


def score_recovery(
    candidates: Any,
    pair: SimulatedPair,
    area_pix: float,
    *,
    min_ideal_snr: float = 7.0,
    min_score: float = 0.5,
    match_radius: float = 2.0,
    false_radius: float = 3.0,
) -> RecoveryScore:
    """Score candidates (on the reference grid: ``x``, ``y``, ``snr``, ``sign``, ``score``).

    Parameters
    ----------
    candidates : astropy.table.Table
        E.g. the output of :func:`astrid.science.difference.detect_pair`.
    pair : SimulatedPair
        The pair the candidates were found on.
    area_pix : float
        Usable area of the difference in pixels.
    min_ideal_snr, min_score, match_radius, false_radius : float
        Thresholds (ideal S/N, candidate score, pixels).

    Returns
    -------
    RecoveryScore
    """
    import numpy as np
    from scipy.spatial import cKDTree

    truth = pair.truth
    x = np.asarray(candidates["x"], float)
    y = np.asarray(candidates["y"], float)
    pos = np.asarray(candidates["sign"]) > 0
    good = np.asarray(candidates["score"], float) >= min_score
    tr = truth[truth["kind"] == "transient"]
    ideal = np.asarray(tr["ideal_snr"], float)
    strong = ideal >= min_ideal_snr
    from scipy import ndimage

    masked = np.zeros(len(tr), bool)
    for img, cx, cy in ((pair.new, "x_new", "y_new"), (pair.ref, "x_ref", "y_ref")):
        grown = ndimage.binary_dilation(img.mask, iterations=2)
        ix = np.clip(np.round(np.asarray(tr[cx], float)).astype(int), 0, grown.shape[1] - 1)
        iy = np.clip(np.round(np.asarray(tr[cy], float)).astype(int), 0, grown.shape[0] - 1)
        masked |= grown[iy, ix]
    measurable = measurable_snr(pair, tr) >= min_ideal_snr
    completeness = snr_ratio = completeness_unmasked = completeness_measurable = float("nan")
    if strong.any() and pos.any():
        tree = cKDTree(np.c_[x[pos], y[pos]])
        d, j = tree.query(np.c_[tr["x_ref"], tr["y_ref"]][strong])
        hit = d < match_radius
        completeness = float(hit.mean())
        clear = ~masked[strong]
        completeness_unmasked = float(hit[clear].mean()) if clear.any() else float("nan")
        ok = measurable[strong]
        completeness_measurable = float(hit[ok].mean()) if ok.any() else float("nan")
        if hit.any():
            snr = np.asarray(candidates["snr"], float)[pos][j[hit]]
            snr_ratio = float(np.median(snr / ideal[strong][hit]))
    elif strong.any():
        completeness = completeness_unmasked = 0.0
        completeness_measurable = 0.0 if (measurable & strong).any() else float("nan")
    real = truth[np.isin(truth["kind"], ["transient", "variable", "moving"])]
    if len(real) and len(x):
        d_real, _ = cKDTree(np.c_[real["x_ref"], real["y_ref"]]).query(np.c_[x, y])
        is_real = d_real <= false_radius
    else:
        is_real = np.zeros(len(x), bool)
    false = good & ~is_real
    stars = pair.ref.stars
    near = np.zeros(len(x), bool)
    if len(stars) and len(x):
        d_star, _ = cKDTree(np.c_[stars["x"], stars["y"]]).query(np.c_[x, y])
        near = d_star <= 5.0
    n_good = int(good.sum())
    return RecoveryScore(
        n_strong=int(strong.sum()),
        completeness=completeness,
        snr_ratio=snr_ratio,
        n_false=int(false.sum()),
        false_per_4mpix=float(false.sum()) * 2048.0**2 / max(float(area_pix), 1.0),
        precision=float((good & is_real).sum()) / n_good if n_good else float("nan"),
        n_false_near_stars=int((false & near).sum()),
        n_strong_masked=int((masked & strong).sum()),
        completeness_unmasked=completeness_unmasked,
        n_unmeasurable=int((strong & ~measurable).sum()),
        completeness_measurable=completeness_measurable,
    )
