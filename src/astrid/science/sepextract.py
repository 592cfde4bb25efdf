"""``sep.extract`` with a pixel stack sized on demand.

SEP keeps the pixels of the objects being assembled in a stack whose capacity is global
(``sep.set_extract_pixstack``) and which it allocates, and touches in full, on every call.
A stack of a quarter of the image's pixels never overflows but costs ~45 MB of fresh
memory per call at 4 Mpix (~20 ms of page faults, four calls per ``astrid detect``); SEP's
default of 300,000 pixels is plenty for ordinary fields. :func:`extract_objects` tries that
first and extracts again with the large stack only when SEP reports the stack full, so the
objects are the same either way (the stack is a capacity, not a parameter of the
detection).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import sep

__all__ = ["extract_objects"]

_FIRST_STACK = 300_000  # SEP's own default, in pixels


def extract_objects(
    data: np.ndarray, *args: Any, large_stack: int | None = None, **kwargs: Any
) -> np.ndarray:
    """``sep.extract(data, *args, **kwargs)`` that never fails for want of pixel stack.

    Parameters
    ----------
    data : numpy.ndarray
        C-contiguous float32 (or float64) image, shape (ny, nx).
    *args, **kwargs
        Passed to ``sep.extract`` (threshold, err, mask, minarea...).
    large_stack : int, optional
        The stack (pixels) of the second try, when the first one's is full (default: a
        quarter of the image's pixels); never less than the stack set when called.

    Returns
    -------
    numpy.ndarray
        SEP's structured array of objects.
    """
    old = sep.get_extract_pixstack()
    large = max(old, data.size // 4 if large_stack is None else int(large_stack))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sep.set_extract_pixstack(min(_FIRST_STACK, large))
            try:
                return sep.extract(data, *args, **kwargs)
            except Exception as exc:  # sep raises a bare Exception
                if "pixel buffer full" not in str(exc) or large <= _FIRST_STACK:
                    raise
            sep.set_extract_pixstack(large)
            return sep.extract(data, *args, **kwargs)
    finally:
        sep.set_extract_pixstack(old)
