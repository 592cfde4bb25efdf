"""The ``astrid`` command line: a thin face over the domain, pipeline and science layers."""

from __future__ import annotations

import typer

from astrid import __version__

app = typer.Typer(
    name="astrid",
    help="AstrID: find new and changing objects in survey images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print AstrID's version."""
    typer.echo(__version__)


@app.callback()
def main() -> None:
    """AstrID: find new and changing objects in survey images."""
