"""Sky commands: ``sky build-hips`` writes AstrID's own HiPS from its reference images."""

from __future__ import annotations

from typing import Annotated

import typer

from astrid.cli.app import app, console, fail
from astrid.runtime import Runtime

sky_app = typer.Typer(help="AstrID's own sky (the HiPS the sky map draws).", no_args_is_help=True)
app.add_typer(sky_app, name="sky")

__all__ = ["sky_app"]


@sky_app.command("build-hips")
def build_hips(
    force: Annotated[bool, typer.Option(help="Rebuild even when nothing changed.")] = False,
) -> None:
    """Build the HiPS of the active reference images (served at /hips/astrid/).

    Skipped when the set already holds exactly the active references; rebuilt when a
    reference was added or retired.
    """
    from astrid.pipeline.hips import HIPS_URL_PATH, NoReferencesError, build_reference_hips

    runtime = Runtime.from_settings()
    try:
        built = build_reference_hips(runtime, force=force)
    except NoReferencesError as exc:
        raise fail(str(exc)) from None
    finally:
        runtime.close()
    what = "built" if built.rebuilt else "up to date"
    console.print(
        f"HiPS {what}: {built.n_references} reference(s), order {built.order}, "
        f"{built.n_tiles} tiles in {built.path} (served at {HIPS_URL_PATH}/)",
        highlight=False,
    )
