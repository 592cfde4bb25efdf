"""Calibration commands: ``calibration add|list`` (master bias, dark and flat frames)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from astrid.cli.app import app, console, fail

__all__ = ["calibration_app"]

calibration_app = typer.Typer(
    help="Master bias, dark and flat frames applied by the preprocess stage.",
    no_args_is_help=True,
)
app.add_typer(calibration_app, name="calibration")


@calibration_app.command("add")
def calibration_add(
    file: Annotated[Path, typer.Argument(help="The master frame (FITS).")],
    kind: Annotated[str, typer.Option(help="bias | dark | flat")],
    instrument: Annotated[str, typer.Option(help="Instrument whose images it calibrates.")],
    filter: Annotated[str | None, typer.Option(help="Band (flats only).")] = None,
    valid_from: Annotated[
        str | None, typer.Option(help="First valid date: MJD or ISO (2026-01-31).")
    ] = None,
    valid_to: Annotated[str | None, typer.Option(help="Last valid date: MJD or ISO.")] = None,
    hdu: Annotated[
        str | None,
        typer.Option(
            "--hdu",
            help="The chip of a multi-chip file: index, EXTNAME or EXTNAME,EXTVER "
            "(4, N4, SCI,2); the master then calibrates that chip only. 'all': every chip, "
            "one master each (all registered, or none if a chip is refused).",
        ),
    ] = None,
    chip: Annotated[
        str | None,
        typer.Option(
            "--chip",
            help="The chip a single-image master belongs to (N4, SCI,2): a per-chip master "
            "shipped as its own file then calibrates that chip's observations only.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Register a master frame; the preprocess stage applies it to matching observations.

    A bias in ADU; a dark bias-subtracted, in ADU with EXPTIME (stored as ADU/s) or BUNIT
    'adu/s'; a flat with no zero pixel outside its MASK (normalised to median 1). Optional
    VARIANCE and MASK extensions. A file of several chips (SCI,1/SCI,2, a mosaic's CCDs)
    needs --hdu: one chip, or 'all' for every chip (one master each, applied to that
    chip's observations). --chip keys a single-image master to one chip.
    """
    from astrid.domain.calibration import register_calibrations
    from astrid.runtime import Runtime

    if not file.is_file():
        raise fail(f"file: {file} does not exist")
    runtime = Runtime.from_settings()
    runtime.require_migrated()
    every = hdu is not None and hdu.strip().lower() == "all"
    infos = register_calibrations(
        runtime.db,
        runtime.blobs,
        file.read_bytes(),
        kind=kind,
        instrument=instrument,
        filter=filter,
        valid_from=valid_from,
        valid_to=valid_to,
        filename=file.name,
        hdu=hdu,
        chip=chip,
    )
    if as_json:
        # one master: its object, as always; --hdu all: the list of them
        out = [i.as_dict() for i in infos] if every else infos[0].as_dict()
        typer.echo(json.dumps(out))
        return
    for info in infos:
        console.print(
            f"registered {info.kind} #{info.id} for {info.instrument}"
            + (f" ({info.filter})" if info.filter else "")
            + (f", chip {info.chip}" if info.chip else "")
            + f", {info.height}x{info.width}"
        )
        for note in info.notes:
            console.print(f"  {note}")


@calibration_app.command("list")
def calibration_list(
    instrument: Annotated[str | None, typer.Option(help="Only this instrument.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The registered master frames, newest first."""
    from astrid.domain.calibration import list_calibrations
    from astrid.runtime import Runtime

    runtime = Runtime.from_settings()
    runtime.require_migrated()
    rows = list_calibrations(runtime.db, instrument=instrument, kind=kind)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in rows]))
        return
    table = Table(
        "id", "kind", "instrument", "filter", "chip", "shape", "valid from", "valid to", "file"
    )
    for r in rows:
        table.add_row(
            str(r.id),
            r.kind,
            r.instrument or "",
            r.filter or "",
            r.chip or "",
            f"{r.height}x{r.width}",
            "" if r.valid_from is None else f"{r.valid_from:.2f}",
            "" if r.valid_to is None else f"{r.valid_to:.2f}",
            r.filename or "",
        )
    console.print(table)
