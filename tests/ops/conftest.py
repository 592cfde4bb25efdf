"""The operations tests reuse the pipeline's loopback archive server and Redis namespace."""

from tests.pipeline.conftest import archive_server, redis_broker_url  # noqa: F401  (fixtures)
