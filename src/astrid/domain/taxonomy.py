"""The classification taxonomy: a versioned tree of names, addressed by paths.

A path names a node from the root, with ``/`` between levels: ``transient/supernova/Ia``,
``artefact/cosmic ray``. A vote or review may carry one; it must exist in the current version.
Versions are immutable: an admin publishes a new tree as version ``n + 1`` and old votes keep
the version they were cast under. With no stored version, :data:`DEFAULT_TREE` is version 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from astrid.domain.curation_audit import Actor, CurationInputError, audit
from astrid.domain.events import EventType
from astrid.store.tables import TaxonomyVersion

__all__ = ["DEFAULT_TREE", "Taxonomy", "current_taxonomy", "flatten", "publish", "resolve_path"]

Tree = dict[str, Any]

DEFAULT_TREE: Tree = {
    "transient": {
        "supernova": {"Ia": {}, "Ibc": {}, "II": {}, "IIn": {}, "superluminous": {}},
        "tidal disruption event": {},
        "kilonova": {},
        "nova": {},
        "cataclysmic variable": {},
        "flare star": {},
        "GRB afterglow": {},
    },
    "variable star": {"pulsating": {}, "eclipsing binary": {}, "YSO": {}, "irregular": {}},
    "AGN": {},
    "solar-system object": {"asteroid": {}, "comet": {}},
    "artefact": {
        "cosmic ray": {},
        "subtraction residual": {},
        "saturated star": {},
        "ghost": {},
        "bad column": {},
        "dipole": {},
        "satellite trail": {},
        "hot pixel": {},
    },
    "unknown": {},
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _+.\-]{0,63}$")
MAX_DEPTH = 8
MAX_NODES = 5000


@dataclass(frozen=True)
class Taxonomy:
    """One version of the tree and its flattened paths."""

    version: int
    tree: Tree
    paths: tuple[str, ...]


def flatten(tree: Tree, field: str = "body.tree") -> list[str]:
    """Every node path of ``tree`` (``a``, ``a/b``, ...), validating names, depth and size."""
    out: list[str] = []

    def walk(node: Any, prefix: str, depth: int) -> None:
        if not isinstance(node, dict):
            raise CurationInputError(field, f"node {prefix or '/'} must be an object of children")
        if depth > MAX_DEPTH:
            raise CurationInputError(field, f"deeper than {MAX_DEPTH} levels at {prefix}")
        for name, child in node.items():
            if not _NAME.match(str(name)):  # no '/': it separates the levels of a path
                raise CurationInputError(field, f"invalid class name {name!r}")
            path = f"{prefix}/{name}" if prefix else str(name)
            out.append(path)
            if len(out) > MAX_NODES:
                raise CurationInputError(field, f"more than {MAX_NODES} classes")
            walk(child, path, depth + 1)

    walk(tree, "", 1)
    if not out:
        raise CurationInputError(field, "the taxonomy has no classes")
    return out


def current_taxonomy(session: Session) -> Taxonomy:
    """The newest stored version, or the built-in default as version 1."""
    row = session.scalars(
        select(TaxonomyVersion).order_by(TaxonomyVersion.version.desc()).limit(1)
    ).first()
    if row is None:
        return Taxonomy(1, DEFAULT_TREE, tuple(flatten(DEFAULT_TREE)))
    return Taxonomy(row.version, dict(row.tree), tuple(row.paths))


def resolve_path(
    session: Session, path: str | None, field: str = "body.classification"
) -> tuple[str | None, int | None]:
    """Check ``path`` against the current taxonomy; return it (canonical case) and the version.

    Matching ignores case and surrounding spaces; ``None`` or empty passes as no class.
    """
    if path is None or not path.strip():
        return None, None
    tax = current_taxonomy(session)
    wanted = "/".join(p.strip() for p in path.strip().strip("/").split("/")).casefold()
    for known in tax.paths:
        if known.casefold() == wanted:
            return known, tax.version
    raise CurationInputError(
        field,
        f"unknown taxonomy path {path[:200]!r} (version {tax.version})",
        hint="GET /api/v1/taxonomy lists the paths",
    )


def publish(session: Session, tree: Tree, actor: Actor, note: str | None = None) -> Taxonomy:
    """Store ``tree`` as the next version (admins); earlier versions stay as they were."""
    paths = flatten(tree)
    newest = session.scalar(select(func.max(TaxonomyVersion.version)))
    if newest is None:  # keep the built-in default as a real version 1 first
        session.add(TaxonomyVersion(version=1, tree=DEFAULT_TREE, paths=flatten(DEFAULT_TREE)))
        newest = 1
    row = TaxonomyVersion(
        version=newest + 1, tree=tree, paths=paths, note=note, created_by=actor.username
    )
    session.add(row)
    session.flush()
    audit(
        session,
        "taxonomy",
        actor,
        event=EventType.TAXONOMY_PUBLISHED,
        before={"version": newest},
        after={"version": row.version, "n_classes": len(paths)},
    )
    return Taxonomy(row.version, tree, tuple(paths))
