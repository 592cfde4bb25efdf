"""Fixtures of the pipeline tests: a real Redis namespace and a loopback archive server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from astrid.pipeline.demo import DemoSurvey, simulate_demo_survey
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.runtime import Runtime
from tests.pipeline.archive_server import ArchiveServer, load_image

DECAM = "decam_cutouts/DEC-OBS04a.mini.fits"
NIRCAM = "nircam_pair/jw02561001002-02561-o001_t003_nircam_clear-f200w_i2d_stamp.fits"


@pytest.fixture
def redis_broker_url(redis_server: str) -> Iterator[str]:
    """A broker URL on the real Redis with a namespace of its own, emptied afterwards.

    The heartbeat timeout is short (1.5 s) and queue maintenance runs on every command, so a
    killed worker's unacknowledged messages are requeued within seconds.
    """
    import redis

    client = redis.Redis.from_url(redis_server)
    namespace = f"astrid-test-{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in redis_server else "?"
    yield (
        f"{redis_server}{sep}namespace={namespace}&heartbeat_timeout=1500&maintenance_chance=1000000"
    )
    keys = list(client.scan_iter(match=f"{namespace}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def archive_server(shared_data: Path) -> Iterator[ArchiveServer]:
    """SkyView + MAST look-alike on loopback serving a real DECam and a real NIRCam image."""
    images = [
        load_image(shared_data / DECAM, "DECam", "1001"),
        load_image(shared_data / NIRCAM, "JWST", "2001"),
    ]
    server = ArchiveServer(images).start()
    yield server
    server.stop()


def one_field_survey(
    runtime: Runtime,
    folder: Path,
    *,
    seed: int,
    n_epochs: int,
    n_transients: int,
    flux_range: tuple[float, float],
) -> tuple[list[int], DemoSurvey]:
    """One simulated field of ``n_epochs`` 256² epochs (epoch 0 the deep reference;
    :func:`~astrid.pipeline.demo.simulate_demo_survey`) written into ``folder`` and
    ingested (survey ``test``): the observation ids of epochs 0, 1, ... and the survey."""
    survey = simulate_demo_survey(
        folder, seed=seed, n_fields=1, n_epochs=n_epochs, n_transients=n_transients,
        flux_range=flux_range,
    )  # fmt: skip
    outcomes = ingest_paths(runtime, survey.paths, survey="test")
    assert all(o.status == "ingested" for o in outcomes), outcomes
    ids = {Path(o.path).name: int(o.observation_id) for o in outcomes if o.observation_id}
    return [ids[f"field-a-e{k}.fits"] for k in range(n_epochs)], survey
