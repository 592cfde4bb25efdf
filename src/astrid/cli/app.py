"""The typer application and the shared helpers of every command module."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from rich.console import Console
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from astrid import __version__
from astrid.errors import AstridError
from astrid.settings import get_settings
from astrid.store.db import is_unavailable, unavailable_error

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
    """Console-script entry point: expected errors become one clear line, exit code 2.

    A database that cannot be reached, at start or mid-run, in any command, is one line naming
    its URL (password masked) instead of a driver traceback.
    """
    try:
        app(args=list(argv) if argv is not None else None, prog_name="astrid")
    except AstridError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (DBAPIError, PoolTimeoutError) as exc:
        if not is_unavailable(exc):
            raise
        error = unavailable_error(get_settings().resolved_database_url, exc)
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
