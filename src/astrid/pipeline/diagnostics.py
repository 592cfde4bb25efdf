"""Diagnostics beyond the readiness probes: loading the model and a detection smoke test.

* :func:`check_model_load` loads AstrID's shipped real-bogus model (the one the alert
  path scores with) and scores one blank triplet, so a broken install (torch, the model
  package) shows here rather than on the first alert;
* :func:`smoke_test` simulates a small image pair with known transients
  (:func:`astrid.science.simulate.simulate_pair`), subtracts it with ZOGY and extracts
  candidates with the science core, and counts the injected transients found within
  :data:`MATCH_PX` pixels. Nothing is stored. It passes when at least
  :data:`SMOKE_MIN_RECOVERY` of the transients with an ideal S/N above
  :data:`SMOKE_MIN_SNR` are found (injection-recovery at that S/N is complete in the
  science tests; a miss means the detection path is broken, not unlucky).

Both take a ``log`` callable that receives one human line per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from astrid.errors import AstridError

__all__ = [
    "MATCH_PX",
    "SMOKE_MIN_RECOVERY",
    "SMOKE_MIN_SNR",
    "SmokeResult",
    "SmokeTestError",
    "check_model_load",
    "smoke_test",
]

#: An injected transient counts as found when a candidate lies this close, pixels.
MATCH_PX = 2.0
#: Transients with an ideal S/N above this must be found ...
SMOKE_MIN_SNR = 10.0
#: ... at least this fraction of them.
SMOKE_MIN_RECOVERY = 0.8

Log = Callable[[str], None]


class SmokeTestError(AstridError):
    """The smoke test found too few of the injected transients."""


@dataclass(frozen=True)
class SmokeResult:
    """What the smoke test injected and found (counts; ``seconds`` of wall time)."""

    shape: tuple[int, int]
    injected: int
    bright: int
    detected: int
    bright_detected: int
    candidates: int
    threshold_sigma: float
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def smoke_test(
    log: Log = lambda line: None,
    *,
    size: int = 256,
    n_stars: int = 120,
    n_transients: int = 12,
    seed: int = 7,
    threshold: float = 5.0,
) -> SmokeResult:
    """Simulate a ``size``² pair with ``n_transients`` transients, detect, count.

    Raises
    ------
    SmokeTestError
        Fewer than :data:`SMOKE_MIN_RECOVERY` of the bright transients were found.
    """
    from scipy.spatial import cKDTree

    from astrid.science.extract import extract_candidates
    from astrid.science.simulate import simulate_pair
    from astrid.science.simulate_model import AnalyticPSF, Exposure
    from astrid.science.zogy import zogy

    t0 = time.perf_counter()
    log(f"simulating a {size}x{size} pair: {n_stars} stars, {n_transients} transients")
    pair = simulate_pair(
        (size, size),
        n_stars,
        seed=seed,
        new=Exposure(psf=AnalyticPSF(fwhm=3.0), mjd=60030.0),
        ref=Exposure(psf=AnalyticPSF(fwhm=2.6)),
        n_transients=n_transients,
        transient_flux_range=(800.0, 5000.0),
    )
    log("subtracting with ZOGY")
    diff = zogy(pair.new.data, pair.ref.data, new_mask=pair.new.mask, ref_mask=pair.ref.mask)
    log(f"extracting candidates above {threshold:g} sigma")
    cand = extract_candidates(diff, threshold, wcs=pair.ref.wcs, zero_point=pair.ref.zeropoint)
    truth = pair.truth[pair.truth["kind"] == "transient"]
    x = np.where(np.isfinite(truth["x_ref"]), truth["x_ref"], truth["x_new"])
    y = np.where(np.isfinite(truth["y_ref"]), truth["y_ref"], truth["y_new"])
    if len(cand):
        dist, _ = cKDTree(np.c_[cand["x"], cand["y"]]).query(np.c_[x, y])
        found = dist < MATCH_PX
    else:
        found = np.zeros(len(truth), dtype=bool)
    bright = np.asarray(truth["ideal_snr"]) > SMOKE_MIN_SNR
    result = SmokeResult(
        shape=(size, size),
        injected=len(truth),
        bright=int(bright.sum()),
        detected=int(found.sum()),
        bright_detected=int((found & bright).sum()),
        candidates=len(cand),
        threshold_sigma=threshold,
        seconds=round(time.perf_counter() - t0, 2),
    )
    log(
        f"found {result.detected} of {result.injected} injected transients "
        f"({result.bright_detected} of {result.bright} with ideal S/N > {SMOKE_MIN_SNR:g}); "
        f"{result.candidates} candidates in {result.seconds:.2f} s"
    )
    if result.bright == 0 or result.bright_detected < SMOKE_MIN_RECOVERY * result.bright:
        raise SmokeTestError(
            f"smoke test found {result.bright_detected} of {result.bright} bright transients "
            f"(needs {SMOKE_MIN_RECOVERY:.0%})"
        )
    return result


def check_model_load(log: Log = lambda line: None) -> str:
    """Load the shipped model and score one blank triplet; its version.

    Raises
    ------
    AstridError
        The model cannot be loaded (the message says why).
    """
    from astrid.model.score import load_scorer

    t0 = time.perf_counter()
    log("loading the shipped real-bogus model")
    scorer = load_scorer("default")
    version = scorer.loaded.version
    log(f"model {version} loaded in {time.perf_counter() - t0:.2f} s; scoring a blank triplet")
    blank = np.zeros((1, scorer.channels, scorer.size, scorer.size), dtype=np.float32)
    score = float(scorer.score(blank)[0])
    log(f"P(real) of a blank triplet: {score:.3f}")
    if not 0.0 <= score <= 1.0:
        raise AstridError(f"the model scored a blank triplet {score!r}, not a probability")
    return f"ok (model {version})"
