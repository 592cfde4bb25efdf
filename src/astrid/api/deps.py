"""Shared route dependencies: the runtime and the API config of the running app, and the
caller as a :class:`~astrid.api.auth.Principal` holding a role (``Viewer``: at least
viewer, read scope; ``...Write``: the write scope too).

Dependencies that do no I/O are ``async def`` so FastAPI runs them inline instead of handing
each one to the thread pool (a measurable cost per request under load).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from astrid.api.auth import Principal, require
from astrid.api.config import ApiConfig
from astrid.runtime import Runtime

__all__ = [
    "Admin",
    "AdminWrite",
    "Config",
    "CuratorWrite",
    "Expert",
    "ExpertWrite",
    "Rt",
    "Viewer",
    "ViewerWrite",
]


async def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _config(request: Request) -> ApiConfig:
    config: ApiConfig = request.app.state.config
    return config


Rt = Annotated[Runtime, Depends(_runtime)]
Config = Annotated[ApiConfig, Depends(_config)]

Viewer = Annotated[Principal, Depends(require("viewer"))]
ViewerWrite = Annotated[Principal, Depends(require("viewer", write=True))]
CuratorWrite = Annotated[Principal, Depends(require("curator", write=True))]
Expert = Annotated[Principal, Depends(require("expert"))]
ExpertWrite = Annotated[Principal, Depends(require("expert", write=True))]
Admin = Annotated[Principal, Depends(require("admin"))]
AdminWrite = Annotated[Principal, Depends(require("admin", write=True))]
