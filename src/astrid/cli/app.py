"""The typer application and the shared helpers of every command module.

The command modules (:data:`COMMAND_MODULES`) register their commands on :data:`app` when
imported. They are imported the first time typer builds the command tree (so ``from
astrid.cli import app`` sees every command), except that :func:`main` imports only the
module of a command listed in :data:`_OWN_MODULE` (``astrid detect``, ``astrid subtract``):
their start-up then skips the database, pipeline, API and model layers (about 1 s of CPU),
and imports scipy and astropy without the work :mod:`astrid.cli.lean` skips.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from astrid import __version__
from astrid.errors import AstridError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["COMMAND_MODULES", "app", "console", "err_console", "fail", "main"]

# The order is the help order.
COMMAND_MODULES = (
    "core",  # init, db, ingest, observations, demo
    "pipeline",  # ingest-position, ingest-alerts, worker, status
    "process",  # process
    "calibration",  # calibration add|list
    "science",  # subtract, detect
    "model",  # train, models, score-alerts
    "model_ops",  # model retrain, model drift
    "api",  # serve, users, api-keys
    "catalog",  # catalog ..., notify ...
    "curation",  # objects, curation
    "ops",  # backup, restore, schedule
    "sky",  # sky build-hips
)
# Commands whose whole module is known: ``main`` imports that module alone for them.
_OWN_MODULE = {"detect": "science", "subtract": "science"}


class _AstridTyper(typer.Typer):
    """A Typer that imports every command module when typer first builds its command tree.

    ``typer.main.get_command`` reads ``registered_callback`` first, so that read is the hook.
    """

    _complete = False

    @property  # type: ignore[override]
    def registered_callback(self) -> Any:
        if not self._complete:
            self.load_commands(COMMAND_MODULES)
        return self._registered_callback

    @registered_callback.setter
    def registered_callback(self, value: Any) -> None:
        self._registered_callback = value

    def load_commands(self, modules: Sequence[str]) -> None:
        """Import the given command modules (names under ``astrid.cli``); no others later."""
        self._complete = True
        for name in modules:
            importlib.import_module(f"astrid.cli.{name}")


app = _AstridTyper(
    name="astrid",
    help="AstrID: find new and changing objects in survey images.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# ``console`` (stdout) and ``err_console`` (stderr) are made at first use (module
# ``__getattr__``): rich is not imported by a command that never prints through them
# (``astrid detect``: ~25 ms of start-up).
console: Console
err_console: Console


def _make_console(stderr: bool) -> Console:
    from rich.console import Console

    # Piped output (CI, scripts) gets wide tables instead of rich's 80-column default.
    return Console(stderr=stderr, width=None if Console(stderr=stderr).is_terminal else 200)


def __getattr__(name: str) -> Any:
    if name in ("console", "err_console"):
        made = _make_console(stderr=name == "err_console")
        globals()[name] = made
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _err_console() -> Console:
    made: Console = globals().get("err_console") or __getattr__("err_console")
    return made


@app.callback()
def _root() -> None:
    """AstrID: find new and changing objects in survey images."""


@app.command()
def version() -> None:
    """Print AstrID's version."""
    typer.echo(__version__)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error line to stderr and return the exit to raise.

    One line however long (an archive's URL, a list of paths): rich would otherwise wrap it at
    the terminal's width, 80 columns when stderr is not a terminal.
    """
    _err_console().print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _exit_now() -> NoReturn:
    """End the process with status 0 now: run the ``atexit`` handlers and flush the standard
    streams, but skip the interpreter's teardown (clearing every module and collecting the
    objects of numpy, scipy and astropy: ~0.15 s of CPU after an ``astrid detect``)."""
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if run_exitfuncs is not None:
        run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # closed, or a broken pipe: nothing left to save
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: expected errors become one clear line, exit code 2.

    A database that cannot be reached, at start or mid-run, in any command, is one line naming
    its URL (password masked) instead of a driver traceback. When it is the process's own
    entry point (``argv`` None: the console script, ``python -m astrid``), a science command
    (``detect``, ``subtract``) that succeeded ends the process without the interpreter's
    teardown (:func:`_exit_now`); called with ``argv`` (tests, scripts) it returns as usual.
    """
    args = list(argv) if argv is not None else sys.argv[1:]
    own = _OWN_MODULE.get(args[0]) if args else None
    if own is not None and not app._complete:
        from astrid.cli.lean import lean_imports

        with lean_imports(scipy=False):  # the command module imports astropy, not scipy
            app.load_commands([own])
    try:
        app(args=args, prog_name="astrid")
    except SystemExit as exc:
        if argv is None and own is not None and exc.code in (None, 0):
            _exit_now()
        raise
    except AstridError as exc:
        _err_console().print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        # only a command that used the database has imported SQLAlchemy
        sa_exc = sys.modules.get("sqlalchemy.exc")
        if sa_exc is None or not isinstance(exc, (sa_exc.DBAPIError, sa_exc.TimeoutError)):
            raise
        from astrid.settings import get_settings
        from astrid.store.db import is_unavailable, unavailable_error

        if not is_unavailable(exc):
            raise
        error = unavailable_error(get_settings().resolved_database_url, exc)
        _err_console().print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
