"""The flows tests reuse the pipeline's loopback archive server."""

from tests.pipeline.conftest import archive_server  # noqa: F401  (a fixture)
