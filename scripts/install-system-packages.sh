#!/usr/bin/env bash
# Debian packages the test suite needs (none of them is needed to run AstrID itself):
# database clients, Node.js + npm (the web dashboard's build) and Chromium (its browser tests,
# driven by Playwright for Python; never a test tool's own browser download).
# wrk drives the at-scale API benchmarks (benchmarks/curation_scale.py).
# Each entry is "command:package": the package is installed when the command is missing.
set -euo pipefail
NEEDS=(pg_isready:postgresql-client redis-cli:redis-tools promtool:prometheus node:nodejs npm:npm chromium:chromium wrk:wrk)
missing=()
for entry in "${NEEDS[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
