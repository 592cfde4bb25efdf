"""Inference service: load a trained model, score triplets in batches, validate detections.

:func:`load_scorer` loads either the model behind a registry alias (``champion`` by default)
or a model package folder, including the small default model shipped inside AstrID
(:data:`DEFAULT_MODEL_DIR`). There is no code path that scores with an untrained network:
a missing registry entry raises :class:`~astrid.model.registry.ModelNotRegisteredError`.

Scores are calibrated probabilities (temperature or isotonic calibration fitted on the
validation split at training time) of the candidate at the stamp centre being real.
For speed on CPU the network's batch norms are folded into its convolutions, tensors use
the channels-last memory layout, and scores are computed by
:class:`~astrid.model.centre_net.CentreWindowNet`: the network evaluated only on the
regions the centre window depends on (the same logits up to float32 rounding, ~1/6.8 of the
work); the 8 views of undecided candidates go through it in shared batches.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astrid.errors import AstridError
from astrid.model.centre_net import CentreWindowNet
from astrid.model.registry import (
    DEFAULT_MODEL_NAME,
    LoadedModel,
    load_package,
    load_registered,
)
from astrid.model.stamps import InvalidStampError
from astrid.model.unet import centre_logit
from astrid.model.ztf import ZtfAlert, prepare_alert

if TYPE_CHECKING:  # torch is imported only when a network is used
    from astrid.model.calibration import Calibrator
    from astrid.model.unet import UNet

__all__ = [
    "DEFAULT_MODEL_DIR",
    "SYMMETRY_BAND",
    "ScoredCandidate",
    "Scorer",
    "ValidationRules",
    "intra_op_threads",
    "load_scorer",
    "persist_detections",
    "score_alerts",
    "served_scores",
    "symmetric_views",
    "validate_detections",
]


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run torch's operators on ``n`` threads inside the block (the process's setting is
    restored after it).

    A pipeline process scores one observation's few dozen stamps at a time and runs one
    observation per core: torch's default (a thread per core) then costs several times the
    CPU of one thread (threads waiting on each other), 10x on a loaded 2-core machine. The
    scores differ from the multi-threaded ones only by float32 rounding (another order of
    the convolutions' sums: ~1e-7 in a logit).
    """
    import torch

    old = torch.get_num_threads()
    if old == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"


#: Candidates whose single-view score lies in this band are scored again as the mean logit
#: over the 8 rotations and flips of their stamps (:meth:`Scorer.score`); None: never.
#: Chosen 2026-12-02 by a rule fixed before the runs (docs/model.md "Scoring undecided
#: candidates from 8 views"): on unseen simulated fields the FPR at FNR 2 % fell from 4.11 %
#: to 1.58 %, on real alerts of held-out nights the AUC rose; 17.6 % of simulated candidates
#: fall in the band, so scoring costs ~2.3x the single view.
SYMMETRY_BAND: tuple[float, float] | None = (0.05, 0.95)


def symmetric_views(stamps: np.ndarray) -> list[np.ndarray]:
    """The 8 symmetries of the square (4 rotations, each also mirrored) of stamps
    ``(N, C, S, S)``: the identity first; views, not copies."""
    views = [np.rot90(stamps, k, axes=(2, 3)) for k in range(4)]
    return views + [v[..., ::-1] for v in views]


class Scorer:
    """Batched, calibrated scoring with a loaded model.

    Parameters
    ----------
    loaded : LoadedModel
        Network, calibrator and configuration.
    batch_size : int
        Triplets per forward pass.
    symmetry_band : tuple of float, optional
        ``(low, high)``: a candidate whose single-view score is within it is scored from
        the mean logit over the 8 symmetries of its stamps (test-time augmentation, 8
        forward passes for it alone); None scores one view only. Default
        :data:`SYMMETRY_BAND`.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        batch_size: int = 64,
        symmetry_band: tuple[float, float] | None = SYMMETRY_BAND,
    ) -> None:
        import torch
        import torch.fx.experimental.optimization as fx_opt

        self.loaded = loaded
        self.batch_size = batch_size
        band = symmetry_band
        if band is not None and not 0.0 <= band[0] <= band[1] <= 1.0:
            raise AstridError(f"symmetry band {band} is not (low, high) with 0 <= low <= high <= 1")
        self.symmetry_band = band
        self.size = loaded.net.config.stamp_size
        self.channels = loaded.net.config.in_channels
        self.radius = loaded.net.config.centre_radius
        net: torch.nn.Module = copy.deepcopy(loaded.net).eval()
        # folding batch norms is an optimisation only; score unfused if tracing fails
        with contextlib.suppress(Exception):
            net = fx_opt.fuse(net)
        self.net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # scores from the centre window's regions only; the full map if the layers differ
        self._centre: CentreWindowNet | None = None
        with contextlib.suppress(TypeError, AttributeError):
            self._centre = CentreWindowNet(loaded.net)

    @property
    def model_version(self) -> str:
        """The version string written next to every score."""
        return self.loaded.version

    def _check(self, stamps: np.ndarray) -> np.ndarray:
        arr = np.asarray(stamps, dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        expected = (self.channels, self.size, self.size)
        if arr.ndim != 4 or arr.shape[1:] != expected:
            raise InvalidStampError(
                f"stamps have shape {arr.shape}; this model takes "
                f"(N, {', '.join(map(str, expected))})",
                hint="build inputs with astrid.model.stamps.make_triplet",
            )
        if not np.all(np.isfinite(arr)):
            raise InvalidStampError(
                "stamps contain NaN or infinite values",
                hint="normalise raw cutouts with make_triplet (it replaces NaN pixels)",
            )
        return arr

    def logits(self, stamps: np.ndarray) -> np.ndarray:
        """Raw centre logits, shape ``(N,)``, for normalised stamps ``(N, C, S, S)``."""
        return self._view_logits(self._check(stamps), [0])[0]

    def _view_logits(self, arr: np.ndarray, views: Sequence[int]) -> np.ndarray:
        """Centre logits of the given symmetries (indices into :func:`symmetric_views`) of
        checked stamps, shape ``(len(views), N)``; ``batch_size`` views per forward pass."""
        import torch

        n_views = len(views)
        out = np.empty((n_views, len(arr)), dtype=np.float64)
        lo, hi = (0, self.size) if self._centre is None else self._centre.input_span
        chunk = max(1, self.batch_size // n_views)
        with torch.inference_mode():
            for start in range(0, len(arr), chunk):
                part = symmetric_views(arr[start : start + chunk])
                m = len(part[0])
                # one copy of the (cropped) views, in the layout the convolutions prefer:
                # (views x stamps, S, S, C), seen as a channels-last (N, C, S, S) tensor
                buf = np.empty((n_views, m, hi - lo, hi - lo, arr.shape[1]), np.float32)
                for k, v in enumerate(views):
                    buf[k] = part[v][..., lo:hi, lo:hi].transpose(0, 2, 3, 1)
                x = torch.from_numpy(buf).reshape(n_views * m, hi - lo, hi - lo, -1)
                x = x.permute(0, 3, 1, 2)
                if self._centre is None:
                    z = centre_logit(self.net(x), self.radius)
                else:
                    z = self._centre.from_crop(x)
                out[:, start : start + m] = z.numpy().reshape(n_views, m)
        return out

    def _calibrated(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(self.loaded.calibrator(logits))

    def _in_band(self, single: np.ndarray) -> np.ndarray:
        if self.symmetry_band is None:
            return np.zeros(single.shape, bool)
        low, high = self.symmetry_band
        return (single >= low) & (single <= high)

    def score(self, stamps: np.ndarray) -> np.ndarray:
        """Calibrated real probability, shape ``(N,)``, for stamps ``(N, C, S, S)``.

        Candidates whose single-view score falls in ``symmetry_band`` are scored from the
        mean logit over the 8 rotations/flips of their stamps instead (the network was
        trained invariant to them, so the mean is a less noisy estimate where the decision
        is close); the others, nearly all the clear bogus and clear reals, cost one pass.
        """
        arr = self._check(stamps)
        z = self._view_logits(arr, [0])[0]
        sel = self._in_band(self._calibrated(z))
        if sel.any():
            # the identity view's logit is z itself: 7 more views, not 8
            others = self._view_logits(arr[sel], range(1, 8))
            z[sel] = (z[sel] + others.sum(axis=0)) / 8.0
        return self._calibrated(z)

    def score_with_uncertainty(self, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated score and its uncertainty, each shape ``(N,)``.

        The score is :meth:`score`'s. The uncertainty is the standard deviation of the
        calibrated score over the 8 rotations/flips of the stamps (test-time augmentation):
        the network was trained invariant to them, so a candidate whose score moves with
        the orientation is one the model is unsure about. 0 to 0.5; costs 8 forward passes.
        """
        logits = self._view_logits(self._check(stamps), range(8))
        scores = self._calibrated(logits.ravel()).reshape(logits.shape)
        score = scores[0].copy()
        sel = self._in_band(score)
        score[sel] = self._calibrated(logits[:, sel].mean(axis=0))
        return score, scores.std(axis=0)

    def probability_map(self, stamps: np.ndarray) -> np.ndarray:
        """Per-pixel transient probability (uncalibrated sigmoid), shape ``(N, S, S)``."""
        import torch

        arr = self._check(stamps)
        with torch.inference_mode():
            x = torch.from_numpy(arr).contiguous(memory_format=torch.channels_last)
            return torch.sigmoid(self.net(x))[:, 0].numpy()


def served_scores(net: UNet, calibrator: Calibrator, stamps: np.ndarray) -> np.ndarray:
    """Calibrated scores ``(N,)`` of a freshly fitted network as a :class:`Scorer` with the
    default settings would give them (the 8-view rescoring of :data:`SYMMETRY_BAND`
    included): what the drift references of a new model must be made of, since the
    nightly drift check compares them with the scores the pipeline stored."""
    scorer = Scorer(LoadedModel(net, calibrator, {}), batch_size=256)
    return scorer.score(stamps)


def load_scorer(
    model: str | Path | None = None,
    *,
    alias: str | None = None,
    tracking_uri: str | None = None,
    name: str = DEFAULT_MODEL_NAME,
    batch_size: int = 64,
    symmetry_band: tuple[float, float] | None = SYMMETRY_BAND,
) -> Scorer:
    """Load a scorer from a package folder or from the registry.

    Parameters
    ----------
    model : str or pathlib.Path, optional
        A model package folder, or ``"default"`` for the model shipped with AstrID.
    alias : str, optional
        Registry alias (``champion``, ``challenger``), version number or semver; needs
        ``tracking_uri``. Exactly one of ``model`` and ``alias`` is used.
    tracking_uri : str, optional
        MLflow tracking/registry URI.
    name : str
        Registered model name.
    batch_size : int
        Triplets per forward pass.
    symmetry_band : tuple of float or None, optional
        See :class:`Scorer` (default :data:`SYMMETRY_BAND`).
    """
    if alias is not None:
        if model is not None:
            raise AstridError("give either a model folder or a registry alias, not both")
        if not tracking_uri:
            raise AstridError("loading by alias needs an MLflow tracking URI")
        loaded = load_registered(tracking_uri, alias, name)
    else:
        shipped = model in (None, "default")
        folder = DEFAULT_MODEL_DIR if shipped else Path(str(model))
        loaded = load_package(folder)
        semver = loaded.config.get("semver") or "unversioned"
        loaded.config.setdefault("model_version", f"{name}@{semver}{'+default' if shipped else ''}")
    return Scorer(loaded, batch_size=batch_size, symmetry_band=symmetry_band)


def score_alerts(
    scorer: Scorer,
    alerts: Sequence[ZtfAlert],
    *,
    uncertainty: bool = False,
    streaks: bool = True,
) -> list[dict[str, Any]]:
    """Score ZTF alerts; one row per alert, in order, whatever their stamps hold.

    Columns: the stable ``objectId, candid, ra, dec, score, model_version``, then ``drb``,
    ``rb``, ``uncertainty`` (see :meth:`Scorer.score_with_uncertainty`; None unless asked
    for) and ``problems`` (list of str: edge clipping, heavy masking, broken cutouts, a
    streak). An alert that cannot be scored has ``score`` None and the reason in
    ``problems``; it never stops the others (see :mod:`astrid.model.ztf`).

    With ``streaks`` (the default), alerts of one difference image lying on one line (the
    pieces of a satellite trail) and alerts whose difference stamp a trail crosses
    (:mod:`astrid.model.alert_streaks`) have their score and uncertainty multiplied by
    0.1; every row then also has ``model_score`` (the score before) and ``streak`` (the
    streak's key, or None). Groups are found among the alerts of this call only: score an
    exposure's alerts together.
    """
    prepared = [prepare_alert(a, scorer.size) for a in alerts]
    todo = [i for i, (t, _) in enumerate(prepared) if t is not None]
    scores: list[float | None] = [None] * len(alerts)
    spread: list[float | None] = [None] * len(alerts)
    if todo:
        stamps = np.stack([prepared[i][0] for i in todo])  # type: ignore[misc]
        if uncertainty:
            s, u = scorer.score_with_uncertainty(stamps)
        else:
            s, u = scorer.score(stamps), None
        for k, i in enumerate(todo):
            scores[i] = float(s[k])
            spread[i] = None if u is None else float(u[k])
    rows = [
        {
            "objectId": a.object_id,
            "candid": a.candid,
            "ra": a.ra,
            "dec": a.dec,
            "score": scores[i],
            "model_version": scorer.model_version,
            "drb": a.drb,
            "rb": a.rb,
            "uncertainty": spread[i],
            "problems": prepared[i][1],
        }
        for i, a in enumerate(alerts)
    ]
    if streaks:
        from astrid.model.alert_streaks import alert_streaks, demote_streaks

        demote_streaks(rows, alert_streaks(alerts, [t for t, _ in prepared]))
    return rows


# --------------------------------------------------------------------------- validation


@dataclass
class ScoredCandidate:
    """A scored detection candidate on an image (pixel coordinates, 0-based)."""

    x: float
    y: float
    score: float
    flags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        """True when no validation rule flagged the candidate."""
        return not self.flags


@dataclass(frozen=True)
class ValidationRules:
    """Rules of :func:`validate_detections` (distances in pixels).

    Parameters
    ----------
    duplicate_radius : float
        Candidates closer than this to a higher-scored one are ``duplicate``.
    edge_margin : float
        Candidates closer than this to the image border are ``edge``.
    star_radius : float
        Candidates closer than this to a known (catalogue) star are ``known_star``.
    min_score : float
        Candidates scoring below this are ``artefact`` (the model calls them bogus).
    min_fwhm : float
        Candidates with a measured FWHM (``extra["fwhm"]``) below this are ``artefact``
        (sharper than any PSF: cosmic rays, hot pixels).
    """

    duplicate_radius: float = 3.0
    edge_margin: float = 8.0
    star_radius: float = 2.0
    min_score: float = 0.5
    min_fwhm: float = 1.0


def validate_detections(
    candidates: Iterable[ScoredCandidate],
    image_shape: tuple[int, int],
    known_stars: np.ndarray | None = None,
    rules: ValidationRules | None = None,
) -> list[ScoredCandidate]:
    """Flag duplicates, edge, known-star and artefact candidates (in place; returned sorted
    by decreasing score).

    Parameters
    ----------
    candidates : iterable of ScoredCandidate
    image_shape : tuple of int
        ``(ny, nx)`` of the image, in pixels.
    known_stars : numpy.ndarray, optional
        Shape ``(M, 2)``: ``(x, y)`` pixel positions of catalogue stars.
    rules : ValidationRules, optional
    """
    rules = rules or ValidationRules()
    cands = sorted(candidates, key=lambda c: -c.score)
    ny, nx = image_shape
    kept: list[ScoredCandidate] = []
    for c in cands:
        if c.score < rules.min_score:
            c.flags.append("artefact")
        fwhm = c.extra.get("fwhm")
        if fwhm is not None and math.isfinite(float(fwhm)) and float(fwhm) < rules.min_fwhm:
            c.flags.append("artefact")
        if min(c.x, c.y, nx - 1 - c.x, ny - 1 - c.y) < rules.edge_margin:
            c.flags.append("edge")
        if known_stars is not None and len(known_stars):
            d = np.hypot(known_stars[:, 0] - c.x, known_stars[:, 1] - c.y)
            if float(d.min()) < rules.star_radius:
                c.flags.append("known_star")
        if any(math.hypot(k.x - c.x, k.y - c.y) < rules.duplicate_radius for k in kept):
            c.flags.append("duplicate")
        else:
            kept.append(c)
    for c in cands:
        c.flags = sorted(set(c.flags))
    return cands


def persist_detections(
    session: Any,
    rows: Iterable[Mapping[str, Any]],
    model_version: str,
    model_run_id: int | None = None,
) -> list[Any]:
    """Store scored detections with the version of the model that scored them.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        An open session on AstrID's database (the caller commits).
    rows : iterable of mapping
        Each with ``ra``, ``dec`` (degrees) and ``score`` (calibrated probability, stored as
        ``confidence``); optional ``objectId``/``candid`` (alerts; stored as
        ``external_id``), ``observation_id``, ``candidate_id``, ``mjd``, ``snr``, ``mag``,
        ``source`` and ``flags`` (validation flags, kept in ``extra``).
    model_version : str
        Written on every row.
    model_run_id : int, optional
        The inference run (``model_runs`` row) that produced them.

    Returns
    -------
    list of astrid.store.tables.Detection
    """
    from astrid.store.sky_index import healpix_index
    from astrid.store.tables import Detection

    out = []
    for row in rows:
        ra, dec = float(row["ra"]), float(row["dec"])
        det = Detection(
            ra=ra,
            dec=dec,
            healpix=int(healpix_index(ra, dec)),
            # an unscorable alert is kept, flagged: no confidence, the reason in extra
            confidence=None if row.get("score") is None else float(row["score"]),
            model_version=model_version if row.get("score") is not None else None,
            model_run_id=model_run_id,
            observation_id=row.get("observation_id"),
            candidate_id=row.get("candidate_id"),
            mjd=row.get("mjd"),
            snr=row.get("snr"),
            mag=row.get("mag"),
            source=str(row.get("source", "alert" if "candid" in row else "pipeline")),
            external_id=str(row["candid"]) if row.get("candid") is not None else None,
            extra={
                k: row[k]
                for k in (
                    "objectId",
                    "flags",
                    "drb",
                    "rb",
                    "uncertainty",
                    "problems",
                    "shadow_score",
                    "shadow_version",
                    "model_score",
                    "streak",
                )
                if row.get(k) is not None
            },
        )
        session.add(det)
        out.append(det)
    session.flush()
    return out
