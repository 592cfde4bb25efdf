"""Typed parameters of the pipeline stages, one frozen dataclass per stage.

Each stage reads its own dataclass (``PreprocessParams`` …); :class:`PipelineParams` holds
one of each and is what callers pass around. The JSON form of a stage's parameters
(:meth:`StageParams.as_dict`: field name → value, in declaration order) is part of the
identity hash of its products and stage runs, so the defaults hash exactly as the
string-keyed ``DEFAULT_PARAMS`` of earlier versions did and stored products are reused.

Callers may still give a partial mapping ``{"difference": {"threshold": 8}}``
(:meth:`PipelineParams.from_mapping`): a missing section or key takes the default, an
unknown one is a one-line error, and each value is converted to its declared type (so
``threshold=8`` and ``threshold=8.0`` name the same product).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from astrid.errors import AstridError

__all__ = [
    "DetectParams",
    "DifferenceParams",
    "PipelineParams",
    "PreprocessParams",
    "ReferenceParams",
    "StageParams",
]

P = TypeVar("P", bound="StageParams")


class StageParams:
    """Base of the per-stage parameter dataclasses: JSON form and checked construction."""

    section: ClassVar[str]

    def as_dict(self) -> dict[str, Any]:
        """Field name → value (JSON); hashed into the stage's identity.

        A field added after products were stored (``metadata={"added": True}``) is left
        out while it holds its default, so those products keep their identity hash.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("added") and value == f.default:
                continue
            out[f.name] = value
        return out

    @classmethod
    def from_mapping(cls: type[P], values: Mapping[str, Any] | None) -> P:
        """Defaults updated with ``values``; unknown keys and unconvertible values raise."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values = dict(values or {})
        unknown = set(values) - set(fields)
        if unknown:
            raise AstridError(
                f"unknown {cls.section} parameter(s): {', '.join(sorted(unknown))}",
                hint=f"{cls.section} takes: {', '.join(fields)}",
            )
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            kind = type(getattr(cls(), name))
            try:
                if kind is bool and not isinstance(value, bool):
                    raise TypeError("not a boolean")
                kwargs[name] = kind(value)
            except (TypeError, ValueError) as exc:
                raise AstridError(
                    f"{cls.section}.{name}={value!r} is not a {kind.__name__}: {exc}"
                ) from exc
        return cls(**kwargs)


@dataclass(frozen=True)
class PreprocessParams(StageParams):
    """Parameters of the preprocess stage.

    Attributes
    ----------
    detect_cosmics : bool
        Mask cosmic rays with L.A.Cosmic (``astroscrappy``).
    min_quality : float
        Refuse (park) images whose quality score (0-1) is below this.
    """

    section: ClassVar[str] = "preprocess"
    detect_cosmics: bool = True
    min_quality: float = 0.05


@dataclass(frozen=True)
class ReferenceParams(StageParams):
    """Parameters of the reference stage.

    Attributes
    ----------
    max_offset : float
        Largest centre distance to a reference, in units of the new image's
        centre-to-corner radius (a pre-filter before the overlap test).
    min_overlap : float
        Smallest fraction (0-1) of the new image the reference must cover.
    min_quality : float
        A reference's quality score (0-1) must be at least this.
    coadd_min : int
        With at least this many good earlier images the reference is their inverse-variance
        coadd (0 = never coadd).
    coadd_max : int
        At most this many images (the best by score) go into a coadd.
    """

    section: ClassVar[str] = "reference"
    max_offset: float = 0.5
    min_overlap: float = 0.5
    min_quality: float = 0.2
    # Added with coadded references: left out of the identity hash while at their default.
    coadd_min: int = field(default=3, metadata={"added": True})
    coadd_max: int = field(default=5, metadata={"added": True})


@dataclass(frozen=True)
class DifferenceParams(StageParams):
    """Parameters of the difference stage.

    Attributes
    ----------
    method : str
        ``"zogy"`` or ``"classic"`` (:func:`astrid.science.difference.subtract_pair`).
    threshold : float
        Detection threshold on the score map, in sigma.
    """

    section: ClassVar[str] = "difference"
    method: str = "zogy"
    threshold: float = 5.0


@dataclass(frozen=True)
class DetectParams(StageParams):
    """Parameters of the detect stage.

    Attributes
    ----------
    model : str
        ``"default"``, a model package folder, or ``"rules"`` (the extraction's rule score).
    cutout_size : int
        Side of the stored cutouts, pixels (odd).
    """

    section: ClassVar[str] = "detect"
    model: str = "default"
    cutout_size: int = 63


@dataclass(frozen=True)
class PipelineParams:
    """The parameters of every stage."""

    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    reference: ReferenceParams = field(default_factory=ReferenceParams)
    difference: DifferenceParams = field(default_factory=DifferenceParams)
    detect: DetectParams = field(default_factory=DetectParams)

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any] | PipelineParams | None) -> PipelineParams:
        """Defaults updated section by section from ``params`` (or ``params`` itself)."""
        if isinstance(params, PipelineParams):
            return params
        kinds: dict[str, type[StageParams]] = {
            "preprocess": PreprocessParams,
            "reference": ReferenceParams,
            "difference": DifferenceParams,
            "detect": DetectParams,
        }
        given = dict(params or {})
        unknown = set(given) - set(kinds)
        if unknown:
            raise AstridError(
                f"unknown pipeline parameter section {sorted(unknown)[0]!r}",
                hint=f"sections are: {', '.join(kinds)}",
            )
        return cls(
            preprocess=PreprocessParams.from_mapping(given.get("preprocess")),
            reference=ReferenceParams.from_mapping(given.get("reference")),
            difference=DifferenceParams.from_mapping(given.get("difference")),
            detect=DetectParams.from_mapping(given.get("detect")),
        )

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """``{section: {key: value}}`` (JSON; what a queued message carries)."""
        return {
            "preprocess": self.preprocess.as_dict(),
            "reference": self.reference.as_dict(),
            "difference": self.difference.as_dict(),
            "detect": self.detect.as_dict(),
        }
