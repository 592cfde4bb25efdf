"""Quicker first imports of scipy and astropy for ``astrid detect`` / ``astrid subtract``.

A whole ``astrid detect`` process spends about a third of its CPU importing numpy, scipy and
astropy. Two parts of that do nothing for these commands, and :func:`lean_imports` skips
them while the command's modules are first imported:

* scipy (1.15+) rewrites the docstrings of ~210 functions of ``scipy.special`` and
  ``scipy.ndimage`` at import (its ``xp_capabilities`` decorator parses each docstring with
  numpydoc and appends an array-API support table): ~0.1 s. Inside the block the decorator
  returns the function unchanged; the functions, and every number they compute, are the
  same (only ``help()`` lacks the table).
* ``astropy.io.fits`` imports ``numcodecs`` when it is installed, only to make its
  tile-compression codecs subclasses of ``numcodecs.abc.Codec`` (astropy decompresses with
  its own code either way): ~0.05 s. Inside the block a first import of ``astropy.io.fits``
  does not see numcodecs; ``numcodecs`` itself stays importable afterwards.

Both only change how a module is imported for the first time, in the process that runs the
command: modules already imported (a test session, a script that called
:func:`astrid.cli.main` after importing scipy) are left as they are, and everything is
restored when the block ends. A scipy or astropy that no longer has these hooks is imported
normally.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["lean_imports"]

# scipy modules whose import runs ``xp_capabilities`` over many functions (and the ones that
# import them): a block that finds them all imported has nothing to skip
_SCIPY_DOC_MODULES = ("scipy.special", "scipy.ndimage", "scipy.fft")


def _plain_capabilities(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """``xp_capabilities`` without its docstring rewrite: the function is returned as is."""

    def decorator(f: Any) -> Any:
        return f

    return decorator


@contextlib.contextmanager
def _scipy_plain_docstrings() -> Iterator[None]:
    if all(name in sys.modules for name in _SCIPY_DOC_MODULES):
        yield
        return
    try:
        import scipy._lib._array_api as array_api
    except ImportError:  # no scipy, or a layout without the hook: nothing to skip
        yield
        return
    original = getattr(array_api, "xp_capabilities", None)
    if original is None:
        yield
        return
    array_api.xp_capabilities = _plain_capabilities
    try:
        yield
    finally:
        array_api.xp_capabilities = original


@contextlib.contextmanager
def _fits_without_numcodecs() -> Iterator[None]:
    if "astropy.io.fits" in sys.modules or "numcodecs" in sys.modules:
        yield
        return
    sys.modules["numcodecs"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        import astropy.io.fits  # noqa: F401  # the optional numcodecs import is now skipped
    finally:
        if sys.modules.get("numcodecs", 0) is None:
            del sys.modules["numcodecs"]
    yield


@contextlib.contextmanager
def lean_imports() -> Iterator[None]:
    """Within the block, first imports of scipy and ``astropy.io.fits`` skip work that the
    science commands do not use (see the module docstring); results are unchanged."""
    with _fits_without_numcodecs(), _scipy_plain_docstrings():
        yield
