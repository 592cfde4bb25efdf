#!/usr/bin/env bash
# Install the peer codes the differencing benchmarks compare against (benchmark-only; never
# runtime dependencies): properimage (needs tinynpydb built without isolation) and sfft.
set -euo pipefail
PY=${PY:-.venv/bin/python}
"$PY" -m pip install "setuptools<81" wheel
"$PY" -m pip install --no-build-isolation tinynpydb
"$PY" -m pip install properimage sfft
