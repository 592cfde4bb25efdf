"""AstrID's REST API: a FastAPI app over the domain and pipeline layers.

``create_app(runtime, config)`` (in :mod:`astrid.api.app`) builds the app; ``astrid serve``
runs it under uvicorn. Every route lives under ``/api/v1`` (health and metrics at the root),
declares an access policy, and fails with RFC 9457 ``application/problem+json``.
"""

from astrid.api.app import create_app
from astrid.api.config import ApiConfig

__all__ = ["ApiConfig", "create_app"]
