"""The typer application and the shared helpers of every command module."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from rich.console import Console

from astrid import __version__
from astrid.errors import AstridError

app = typer.Typer(
    name="astrid",
    help="AstrID: find new and changing objects in survey images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output (CI, scripts) gets wide tables instead of rich's 80-column default.
console = Console(width=None if Console().is_terminal else 200)
err_console = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 200)


@app.callback()
def _root() -> None:
    """AstrID: find new and changing objects in survey images."""


@app.command()
def version() -> None:
    """Print AstrID's version."""
    typer.echo(__version__)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error line to stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: expected errors become one clear line, exit code 2."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="astrid")
    except AstridError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
