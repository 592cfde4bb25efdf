"""Catalog and notification commands: ``catalog export|release|releases|sync|crossmatch|
merge|tns-report`` and ``notify add|list|dispatch``.

An :class:`~astrid.errors.AstridError` a command does not catch (a TNS refusal, a merge
conflict...) is one ``error:`` line and exit 2 through :func:`astrid.cli.app.main`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from astrid.catalog.crossmatch import crossmatch_objects, objects_never_crossmatched
from astrid.catalog.entries import sync_catalog
from astrid.catalog.export import FORMATS, ExportSource, iter_export
from astrid.catalog.releases import (
    LiveSource,
    ReleaseSource,
    create_release,
    get_release,
    release_dict,
    verify_release,
)
from astrid.catalog.tns import at_report_for_object, send_at_report
from astrid.cli.app import app, console, fail
from astrid.domain.curation_audit import Actor
from astrid.domain.merges import merge_chosen
from astrid.domain.review import mark_reported
from astrid.notify.dispatcher import NotifyWorker, dispatch_once
from astrid.notify.manage import RuleError, create_rule, rule_dict
from astrid.runtime import Runtime
from astrid.store.tables import CatalogRelease, Discovery, NotificationRule, User

_Row = TypeVar("_Row", CatalogRelease, NotificationRule)

catalog_app = typer.Typer(help="The curated catalog: releases and exports.", no_args_is_help=True)
notify_app = typer.Typer(help="Notification rules and their dispatcher.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(notify_app, name="notify")


@catalog_app.command("export")
def export(
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="csv | votable | fits | json")] = "csv",
    release: Annotated[
        str | None, typer.Option(help="Release version (default: the live catalog).")
    ] = None,
) -> None:
    """Export the catalog (or a release) streamed to a file; light curves in VOTable/FITS."""
    if fmt not in FORMATS:
        raise fail(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    runtime = Runtime.from_settings()
    db = runtime.require_migrated()
    source: ExportSource
    if release is not None:
        with db.session() as session:
            try:
                rel = get_release(session, release)
            except Exception as exc:
                raise fail(f"--release {release!r}: {exc}") from exc
        source = ReleaseSource(runtime.blobs, rel)
    else:
        source = LiveSource(db)
    n = source.n_entries()
    if n == 0:
        raise fail("the catalog is empty (nothing confirmed): nothing to export")
    tmp = output.with_name(f".{output.name}.partial")
    started = time.perf_counter()
    try:
        with tmp.open("wb") as fh:
            for chunk in iter_export(source, fmt):
                fh.write(chunk)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)  # nothing half-written is left behind
    seconds = time.perf_counter() - started
    console.print(
        f"wrote {n} entries to {output} ({fmt}, {output.stat().st_size} bytes, {seconds:.1f} s)"
    )


@catalog_app.command("release")
def release_cmd(
    version: Annotated[str | None, typer.Option(help="Version (default YYYY.MM.DD.N).")] = None,
    note: Annotated[str | None, typer.Option(help="What this release is for.")] = None,
) -> None:
    """Snapshot the confirmed catalog as an immutable, checksummed release."""
    runtime = Runtime.from_settings()
    runtime.require_migrated()
    rel = create_release(runtime, version=version, note=note)  # AstridError -> one line
    info = release_dict(rel)
    console.print(
        f"release {info['version']}: {info['n_entries']} entries, checksum {info['checksum']}"
    )


@catalog_app.command("verify")
def verify(version: Annotated[str, typer.Argument(help="Release version.")]) -> None:
    """Recompute a release's SHA-256 from its stored snapshot and compare."""
    runtime = Runtime.from_settings()
    with runtime.require_migrated().session() as session:
        rel = get_release(session, version)
    if not verify_release(runtime.blobs, rel):
        raise fail(f"release {version}: snapshot does NOT match sha256:{rel.checksum}")
    console.print(f"release {version}: snapshot matches sha256:{rel.checksum}")


def _rows(table: type[_Row]) -> Iterator[_Row]:
    """Every row of ``table`` in id order, from the settings' (migrated) database."""
    with Runtime.from_settings().require_migrated().session() as session:
        yield from session.scalars(select(table).order_by(table.id))


@catalog_app.command("releases")
def releases() -> None:
    """List the catalog releases."""
    for rel in _rows(CatalogRelease):
        info = release_dict(rel)
        typer.echo(
            f"{info['version']}\t{info['n_entries']}\t{info['checksum']}\t{info['created_at']}"
        )


@catalog_app.command("sync")
def sync() -> None:
    """Bring the catalog in line with curation (confirmed objects in, retracted out)."""
    db = Runtime.from_settings().require_migrated()
    with db.session() as session:
        r = sync_catalog(session)
    console.print(
        f"catalog: {r.total} entries ({r.added} added, {r.updated} updated, {r.removed} removed)"
    )


@catalog_app.command("crossmatch")
def crossmatch(
    object_id: Annotated[
        int | None, typer.Option("--object", help="One sky object (its every detection).")
    ] = None,
    all_new: Annotated[
        bool, typer.Option("--all-new", help="Every object never cross-matched yet.")
    ] = False,
    skybot: Annotated[
        bool | None,
        typer.Option(
            "--skybot/--no-skybot",
            help="Ask SkyBoT for solar-system bodies (default: when ASTRID_SKYBOT_URL is set).",
        ),
    ] = None,
) -> None:
    """Annotate objects with the nearest catalogue star/galaxy and known solar-system bodies."""
    if (object_id is None) == (not all_new):
        raise fail("give --object ID or --all-new (one of them)")
    runtime = Runtime.from_settings()
    runtime.require_migrated()
    ids = [object_id] if object_id is not None else objects_never_crossmatched(runtime)
    r = crossmatch_objects(runtime, ids, skybot=skybot)  # CrossmatchError -> one line
    for line in r.errors:
        console.print(f"[yellow]{line}[/yellow]")
    console.print(
        f"cross-matched {r.objects} of {len(ids)} objects: {r.annotated} detections, "
        f"{r.stars} catalogue matches, {r.solar_system} solar-system bodies, "
        f"{len(r.errors)} errors"
    )
    if object_id is not None and r.objects == 0:
        raise typer.Exit(1)


def _signer(does: str) -> Any:
    """The ``--user`` option of a command an expert or admin signs: who ``does`` it."""
    return typer.Option(help=f"Expert or admin who {does}.")


def _expert(session: Session, user: str) -> Actor:
    who = session.scalar(select(User).where(User.username == user))
    if who is None or not who.is_active or who.role not in ("expert", "admin"):
        raise fail(f"--user {user!r}: no such active expert or admin")
    return Actor(who.id, who.username, who.role)


@catalog_app.command("merge")
def merge(
    object_id: Annotated[int, typer.Argument(help="One object id (or an alias).")],
    other_id: Annotated[int, typer.Argument(help="The object that is the same source.")],
    user: Annotated[str, _signer("merges (the objects' audit trail)")] = "admin",
) -> None:
    """Merge two objects that are one source (the older id is kept, the other its alias)."""
    runtime = Runtime.from_settings()
    db = runtime.require_migrated()
    with db.session() as session:
        actor = _expert(session, user)
        kept = merge_chosen(  # NotFoundError, CurationConflictError... -> one line
            session,
            object_id,
            other_id,
            actor,
            max_separation_arcsec=runtime.settings.curation_merge_max_arcsec,
        )
        kept_id, n = kept.id, kept.n_detections
    console.print(f"objects {object_id} and {other_id} are now object {kept_id} ({n} detections)")


@catalog_app.command("tns-report")
def tns_report(
    discovery_id: Annotated[int, typer.Argument(help="Discovery id.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the JSON here (default stdout).")
    ] = None,
    send: Annotated[
        bool, typer.Option("--send", help="Send it to ASTRID_TNS_URL; marks it reported.")
    ] = False,
    user: Annotated[str, _signer("reports (the discovery's audit trail)")] = "admin",
) -> None:
    """The AT report of a discovery in TNS's bulk-report JSON; with --send, report it."""
    runtime = Runtime.from_settings()
    db = runtime.require_migrated()
    actor: Actor | None = None
    with db.session() as session:
        if send:
            actor = _expert(session, user)
        d = session.get(Discovery, discovery_id)
        if d is None:
            raise fail(f"DISCOVERY_ID {discovery_id}: no such discovery")
        report = at_report_for_object(session, d.object_id, runtime.settings)  # TnsError
    text = json.dumps(report, indent=2)
    if output is not None:
        output.write_text(text + "\n")
        console.print(f"wrote the AT report of discovery {discovery_id} to {output}")
    elif not send:
        typer.echo(text)
    if actor is None:
        return
    answer = send_at_report(runtime.settings, report)  # TnsError -> one line
    report_id = (answer.get("data") or {}).get("report_id")
    with db.session() as session:
        mark_reported(session, discovery_id, actor, report_id)
    console.print(f"TNS accepted the report of discovery {discovery_id} (report id {report_id})")


def _quiet(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        start, end = (int(v) for v in value.split("-"))
    except ValueError as exc:
        raise fail(f"--quiet {value!r}: give UTC hours as START-END, e.g. 22-6") from exc
    return start, end


@notify_app.command("add")
def notify_add(
    to: Annotated[str, typer.Option(help="Email address, or webhook URL (http/https).")],
    min_score: Annotated[float | None, typer.Option(help="Model P(real) >= this.")] = None,
    min_snr: Annotated[float | None, typer.Option(help="S/N >= this.")] = None,
    classification: Annotated[
        str | None, typer.Option(help="Taxonomy path prefix, e.g. transient/supernova.")
    ] = None,
    digest: Annotated[bool, typer.Option(help="One daily digest instead of each at once.")] = False,
    event: Annotated[
        list[str] | None,
        typer.Option(help="detection | new_object | classification | discovery | mention."),
    ] = None,
    quiet: Annotated[str | None, typer.Option(help="Quiet hours UTC, START-END (22-6).")] = None,
    max_per_hour: Annotated[int, typer.Option(help="Throttle; the excess goes to a digest.")] = 20,
    user: Annotated[str | None, typer.Option(help="Owner (username) of the rule.")] = None,
) -> None:
    """Add a notification rule."""
    db = Runtime.from_settings().require_migrated()
    with db.session() as session:
        user_id = None
        if user is not None:
            user_id = session.scalar(select(User.id).where(User.username == user))
            if user_id is None:
                raise fail(f"--user {user!r}: no such user")
        try:
            rule = create_rule(
                session,
                to,
                user_id=user_id,
                events=event,
                min_score=min_score,
                min_snr=min_snr,
                classification=classification,
                digest=digest,
                quiet_hours=_quiet(quiet),
                max_per_hour=max_per_hour,
            )
        except RuleError as exc:
            raise fail(f"--{exc.field.replace('_', '-')}: {exc}") from exc
        info = rule_dict(rule)
    console.print(
        f"rule {info['id']}: {info['channel']} to {info['to']} on {', '.join(info['events'])}"
    )


@notify_app.command("list")
def notify_list() -> None:
    """List the notification rules (as JSON lines)."""
    for rule in _rows(NotificationRule):
        typer.echo(json.dumps(rule_dict(rule)))


@notify_app.command("dispatch")
def notify_dispatch(
    follow: Annotated[
        bool, typer.Option(help="Keep running (every ASTRID_NOTIFY_POLL_S).")
    ] = False,
    digests: Annotated[bool, typer.Option(help="Send every pending digest now.")] = False,
) -> None:
    """Plan notifications for new events and send what is due (with retries)."""
    runtime = Runtime.from_settings()
    runtime.require_migrated()
    if follow:
        worker = NotifyWorker(runtime).start()
        console.print(f"notification dispatcher running every {worker.poll_s} s (Ctrl-C stops)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            worker.stop()
        return
    r = dispatch_once(runtime, force_digests=digests)
    console.print(
        f"{r.events} events, {r.digests} digests queued, {r.sent} sent, {r.failed} failed attempts"
    )
