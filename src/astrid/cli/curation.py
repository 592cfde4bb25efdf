"""Curation commands: ``objects list|show``, ``curation vote|undo|sync|queue``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from sqlalchemy import select

from astrid.cli.app import app, console, fail
from astrid.domain.curation_audit import Actor, CurationConflictError, CurationInputError
from astrid.domain.votes import ConsensusRule, cast_vote, load_rule, undo_vote
from astrid.runtime import Runtime
from astrid.store.tables import CurationState, Detection, ObjectMember, SkyObject, User

__all__ = ["curation_app", "objects_app"]

objects_app = typer.Typer(help="Sky objects and their light curves.", no_args_is_help=True)
curation_app = typer.Typer(help="Votes and the scanning queue.", no_args_is_help=True)
app.add_typer(objects_app, name="objects")
app.add_typer(curation_app, name="curation")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _object_record(obj: SkyObject) -> dict[str, Any]:
    keys = (
        "id",
        "ra",
        "dec",
        "first_mjd",
        "last_mjd",
        "peak_mag",
        "latest_mag",
        "max_confidence",
        "n_detections",
        "ztf_object_id",
        "label",
        "classification",
    )
    return {k: getattr(obj, k) for k in keys}


@objects_app.command("list")
def objects_list(
    label: Annotated[str | None, typer.Option(help="real | bogus")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Objects, most recently seen first."""
    runtime = Runtime.from_settings()
    try:
        with runtime.require_migrated().session() as session:
            stmt = select(SkyObject).order_by(SkyObject.last_mjd.desc(), SkyObject.id.desc())
            if label:
                stmt = stmt.where(SkyObject.label == label)
            rows = [_object_record(o) for o in session.scalars(stmt.limit(limit))]
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        console.print(
            f"{r['id']:>7}  {r['ra']:10.5f} {r['dec']:+10.5f}  n={r['n_detections']:<4} "
            f"peak={r['peak_mag']}  {r['label'] or '-'}  {r['ztf_object_id'] or ''}"
        )


@objects_app.command("show")
def objects_show(
    object_id: int,
    forced: Annotated[bool, typer.Option(help="Forced photometry on stored differences.")] = True,
) -> None:
    """An object and its light curve (JSON)."""
    runtime = Runtime.from_settings()
    try:
        with runtime.require_migrated().session() as session:
            obj = session.get(SkyObject, object_id)
            if obj is None:
                raise fail(f"no object with id {object_id}")
            record = _object_record(obj)
            # Start-up time: light curves need photutils (forced photometry); imported here only.
            from astrid.domain.objects import light_curve

            record["light_curve"] = light_curve(session, runtime.blobs, object_id, forced=forced)[
                "points"
            ]
    finally:
        runtime.close()
    typer.echo(json.dumps(record, indent=2, default=str))


def _actor(session: Any, username: str) -> Actor:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active:
        raise fail(f"--user {username!r}: no such active user")
    if user.role == "viewer":
        raise fail(f"--user {username!r} is a viewer; curators and above vote")
    return Actor(user.id, user.username, user.role)


@curation_app.command("vote")
def curation_vote(
    detection_id: int,
    label: Annotated[str, typer.Argument(help="real | bogus | skip")],
    user: Annotated[str, typer.Option("--user", help="Vote as this user.")],
    classification: Annotated[str | None, typer.Option(help="Taxonomy path.")] = None,
    comment: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Vote on a detection as a user (replaces that user's earlier vote)."""
    runtime = Runtime.from_settings()
    try:
        with runtime.require_migrated().session() as session:
            actor = _actor(session, user)
            rule = load_rule(session, ConsensusRule.from_settings(runtime.settings))
            out = cast_vote(
                session,
                detection_id,
                actor,
                label,
                classification=classification,
                comment=comment,
                rule=rule,
            )
    except (CurationInputError, CurationConflictError) as exc:
        raise fail(str(exc)) from exc
    finally:
        runtime.close()
    console.print(
        f"detection {detection_id}: {out.state_before} → {out.state_after}"
        + (" (consensus reached)" if out.consensus_reached else "")
    )


@curation_app.command("undo")
def curation_undo(
    detection_id: int, user: Annotated[str, typer.Option("--user", help="Whose vote.")]
) -> None:
    """Take back a user's vote on a detection."""
    runtime = Runtime.from_settings()
    try:
        with runtime.require_migrated().session() as session:
            out = undo_vote(
                session,
                detection_id,
                _actor(session, user),
                window_s=runtime.settings.curation_undo_window_s,
            )
    except CurationConflictError as exc:
        raise fail(str(exc)) from exc
    finally:
        runtime.close()
    console.print(f"detection {detection_id}: {out.state_before} → {out.state_after}")


@curation_app.command("sync")
def curation_sync(
    batch: Annotated[int, typer.Option(min=1, max=100_000)] = 5000,
) -> None:
    """Queue and associate detections stored without it (e.g. scored by ``score-alerts``)."""
    from astrid.domain.objects import register_detection  # start-up time (see `objects show`)

    runtime = Runtime.from_settings()
    done = 0
    try:
        db = runtime.require_migrated()
        radius = runtime.settings.curation_object_radius_arcsec
        while True:
            with db.session() as session:
                missing = session.scalars(
                    select(Detection)
                    .where(~Detection.id.in_(select(ObjectMember.detection_id)))
                    .order_by(Detection.id)
                    .limit(batch)
                ).all()
                for det in missing:
                    register_detection(session, det, radius)
            done += len(missing)
            if len(missing) < batch:
                break
    finally:
        runtime.close()
    console.print(f"associated and queued {done} detection(s)")


@curation_app.command("queue")
def curation_queue(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20, as_json: JsonFlag = False
) -> None:
    """The top of the scanning queue (highest score first)."""
    runtime = Runtime.from_settings()
    try:
        with runtime.require_migrated().session() as session:
            rows = session.execute(
                select(CurationState, Detection)
                .join(Detection, Detection.id == CurationState.detection_id)
                .where(CurationState.state == "awaiting")
                .order_by(CurationState.score.desc(), CurationState.detection_id.desc())
                .limit(limit)
            ).all()
            records = [
                {
                    "detection_id": d.id,
                    "score": d.confidence,
                    "snr": d.snr,
                    "mag": d.mag,
                    "ra": d.ra,
                    "dec": d.dec,
                    "mjd": d.mjd,
                    "votes": [s.n_real, s.n_bogus, s.n_skip],
                }
                for s, d in rows
            ]
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    for r in records:
        console.print(
            f"{r['detection_id']:>8}  score={r['score']}  snr={r['snr']}  mag={r['mag']}  "
            f"votes(real,bogus,skip)={r['votes']}"
        )
