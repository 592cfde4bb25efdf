"""Quicker first imports of scipy and astropy for ``astrid detect`` / ``astrid subtract``.

A whole ``astrid detect`` process spends about a third of its CPU importing numpy, scipy and
astropy. Three parts of that do nothing for these commands, and :func:`lean_imports` skips
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

* scipy's array-API layer clones the numpy namespace at import (``from numpy import *`` and
  every name of ``dir(numpy)``), which loads numpy's lazily imported ``f2py``, ``testing``,
  ``random``, ``polynomial`` and ``ctypeslib`` (f2py alone imports its Fortran parser):
  ~0.1 s. Inside the block the clone skips those names, and the cloned namespace gets them
  from numpy at first use instead (a module ``__getattr__``), so nothing is missing.

All three only change how a module is imported for the first time, in the process that runs the
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


# numpy submodules that numpy imports only when first used, and that scipy's clone of the
# numpy namespace would otherwise import at once
_NUMPY_LAZY = ("f2py", "testing", "random", "polynomial", "ctypeslib")
_NUMPY_CLONE = "scipy._lib.array_api_compat.numpy"


@contextlib.contextmanager
def _numpy_clone_without_lazy_submodules() -> Iterator[None]:
    import numpy

    skip = tuple(n for n in _NUMPY_LAZY if f"numpy.{n}" not in sys.modules)
    public = getattr(numpy, "__all__", None)
    listing = numpy.__dict__.get("__dir__")
    if _NUMPY_CLONE in sys.modules or not skip or public is None or listing is None:
        yield
        return
    numpy.__all__ = [n for n in public if n not in skip]
    vars(numpy)["__dir__"] = lambda: [n for n in listing() if n not in skip]
    try:
        yield
    finally:
        numpy.__all__ = public
        vars(numpy)["__dir__"] = listing
        clone = sys.modules.get(_NUMPY_CLONE)
        if clone is not None and "__getattr__" not in vars(clone):
            missing = {n for n in skip if not hasattr(clone, n)}
            vars(clone)["__getattr__"] = _forward_to_numpy(missing, clone.__name__)


def _forward_to_numpy(names: set[str], module: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` that gives ``names`` from numpy (imported then, lazily)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            import numpy

            return getattr(numpy, name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


@contextlib.contextmanager
def lean_imports(*, scipy: bool = True) -> Iterator[None]:
    """Within the block, first imports of scipy and ``astropy.io.fits`` skip work that the
    science commands do not use (see the module docstring); results are unchanged.

    ``astropy.io.fits`` is imported on entry (when it is not yet). ``scipy=False`` leaves
    scipy out: entering the scipy part imports ``scipy._lib._array_api`` (~0.1 s), which a
    block that imports no scipy module (the command modules themselves, ``--help``) does
    not need.
    """
    with _fits_without_numcodecs():
        if not scipy:
            yield
            return
        with _numpy_clone_without_lazy_submodules(), _scipy_plain_docstrings():
            yield
