"""``python -m astrid`` is the ``astrid`` command."""

from astrid.cli import main

main()
