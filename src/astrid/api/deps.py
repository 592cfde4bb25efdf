"""Shared route dependencies: the runtime and the API config of the running app.

Dependencies that do no I/O are ``async def`` so FastAPI runs them inline instead of handing
each one to the thread pool (a measurable cost per request under load).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from astrid.api.config import ApiConfig
from astrid.runtime import Runtime

__all__ = ["Config", "Rt"]


async def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _config(request: Request) -> ApiConfig:
    config: ApiConfig = request.app.state.config
    return config


Rt = Annotated[Runtime, Depends(_runtime)]
Config = Annotated[ApiConfig, Depends(_config)]
