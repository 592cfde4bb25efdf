"""The base of every error AstrID raises on purpose.

Each error says what was wrong and, where it can, what to do (``hint``). Faces (CLI, API)
show ``str(error)`` to the user instead of a traceback.
"""

from __future__ import annotations

__all__ = ["AstridError"]


class AstridError(Exception):
    """An expected failure with a message meant for the user.

    Parameters
    ----------
    message : str
        What was wrong, naming the offending input.
    hint : str, optional
        What the user can do about it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
