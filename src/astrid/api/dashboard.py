"""The web dashboard's static files (``web/out``, built by ``make web``) served at ``/``, and
AstrID's own sky HiPS (``<data_dir>/hips/astrid``, built by ``astrid sky build-hips``) at
``/hips/astrid/`` for the sky map.

Next.js exports one HTML file per page (``scan.html``); ``/scan`` is answered with it. Paths
under ``/api/`` never fall through to the dashboard, so an unknown API route stays a
problem+json 404.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

import astrid

__all__ = ["DashboardFiles", "HipsFiles", "dashboard_dir", "mount_dashboard", "mount_hips"]

# src/astrid/__init__.py -> the repository root (an editable install or a checkout).
REPO_BUILD = Path(astrid.__file__).resolve().parents[2] / "web" / "out"


def dashboard_dir(configured: Path | None) -> Path:
    """The configured folder, else the repository's ``web/out``."""
    return configured if configured is not None else REPO_BUILD


class DashboardFiles(StaticFiles):
    """Static files with extension-less page URLs (``/scan`` -> ``scan.html``)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path == "api" or path.startswith("api/"):
            raise HTTPException(404, f"no API route {scope.get('path')}")
        if path not in ("", ".") and not os.path.splitext(path)[1]:
            full, found = self.lookup_path(path + ".html")
            if found is not None and stat.S_ISREG(found.st_mode):
                return FileResponse(full, stat_result=found)
        return await super().get_response(path, scope)


def mount_dashboard(app: FastAPI, folder: Path) -> bool:
    """Serve ``folder`` at ``/`` when it holds a built dashboard; False when it does not."""
    if not (folder / "index.html").is_file():
        return False
    app.mount("/", DashboardFiles(directory=folder, html=True), name="dashboard")
    return True


class HipsFiles(StaticFiles):
    """The HiPS tile folder; answers 404 (not an error) while it has not been built yet.

    A rebuild swaps the folder in one rename, so requests always see a whole tile set.
    """

    async def check_config(self) -> None:
        if self.directory is not None and not Path(self.directory).is_dir():
            return
        await super().check_config()

    async def get_response(self, path: str, scope: Scope) -> Response:
        if self.directory is not None and not Path(self.directory).is_dir():
            raise HTTPException(404, "the sky HiPS is not built (astrid sky build-hips)")
        return await super().get_response(path, scope)


def mount_hips(app: FastAPI, folder: Path, url_path: str) -> None:
    """Serve the HiPS ``folder`` at ``url_path`` (public, like the dashboard's own files: the
    tiles are the reference images' pixels, which Aladin Lite fetches without a token)."""
    app.mount(url_path, HipsFiles(directory=folder, check_dir=False), name="hips")
