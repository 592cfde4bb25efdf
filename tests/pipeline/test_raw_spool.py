"""A multi-image file larger than the in-memory raw cache (``ASTRID_PIPELINE_RAW_CACHE_MB``)
is decompressed once, as a stream, into a spool file named by its hash
(``products.raw_fits``), and each CCD reads only its own HDUs from that file: one
decompression per file, not per CCD, on SQLite and PostgreSQL. The spool is bounded
(least recently used removed first), cleaned up, and refuses a gzip bomb or a corrupt
stream by name."""

from __future__ import annotations

import gzip
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astrid.pipeline.demo import simulate_demo_survey
from astrid.pipeline.stages import products
from astrid.pipeline.stages.ingest import ingest_paths
from astrid.pipeline.stages.preprocess import preprocess_observation
from astrid.runtime import Runtime
from astrid.science.fitsio import ImageTooLargeError, InvalidFitsError, read_image
from astrid.store.blobs import blob_key
from tests.pipeline.test_mosaic_ingest import CCDS, FLAGGED, _mosaic, _preprocessed_mask


@pytest.fixture
def gz_mosaic(tmp_path: Path) -> bytes:
    survey = simulate_demo_survey(tmp_path / "sim", seed=4, n_fields=3, n_epochs=2)
    return gzip.compress(_mosaic(survey, 0, broken="all nan"), 1)


def _count_decompressions(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[str]]:
    """Record every blob fetch and every whole-file decompression ``raw_fits`` makes (the
    streamed one, ``_spool``, and the in-memory one, ``uncompressed``)."""
    fetched: list[str] = []
    unzipped: list[str] = []
    get, spool, unzip = runtime.blobs.get, products._spool, products.uncompressed

    def counted_spool(data: bytes, *args: Any) -> Any:
        unzipped.append("stream")
        return spool(data, *args)

    def counted_unzip(data: bytes, **kw: Any) -> Any:
        if data[:2] == b"\x1f\x8b":  # a header scan of bytes already plain is not one
            unzipped.append("memory")
        return unzip(data, **kw)

    monkeypatch.setattr(runtime.blobs, "get", lambda k: fetched.append(k) or get(k))
    monkeypatch.setattr(products, "_spool", counted_spool)
    monkeypatch.setattr(products, "uncompressed", counted_unzip)
    return fetched, unzipped


def _ingest(runtime: Runtime, tmp_path: Path, data: bytes) -> dict[str, int]:
    path = tmp_path / "exp.fits.gz"
    path.write_bytes(data)
    outcomes = ingest_paths(runtime, [path], survey="test")
    ids = {o.hdu: o.observation_id for o in outcomes if o.observation_id}
    assert set(ids) == set(CCDS)
    return ids  # type: ignore[return-value]


def test_a_mosaic_larger_than_the_cache_is_decompressed_once_into_the_spool(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    tmp_path: Path,
    gz_mosaic: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cache 0 MB (below the file's size): the three CCDs' preprocess fetch and decompress
    the file once, each reads its own mask plane (N5_MASK) from the spool file
    ``<spool>/<key>.fits``, and clearing the kept products removes that file."""
    runtime = make_runtime(migrated_url, pipeline_raw_cache_mb=0)
    key = blob_key(gz_mosaic)
    ids = _ingest(runtime, tmp_path, gz_mosaic)
    products.clear_recent_products()
    fetched, unzipped = _count_decompressions(runtime, monkeypatch)
    for ccd in CCDS:
        assert preprocess_observation(runtime, ids[ccd]).status == "done"
    assert fetched.count(key) == 1
    assert unzipped == ["stream"]
    spooled = products.raw_spool_dir(runtime) / f"{key}.fits"
    assert spooled.is_file()
    # the spool file is the plain FITS file: N4 read from it is N4 of the gzipped bytes
    np.testing.assert_allclose(
        read_image(spooled, "N4").data, read_image(gz_mosaic, "N4").data, rtol=0, atol=1e-6
    )
    masks = {ccd: _preprocessed_mask(runtime, ids[ccd]) for ccd in CCDS}
    assert [bool(masks[c][FLAGGED].all()) for c in CCDS] == [False, True, False]
    products.clear_recent_products()
    assert not spooled.exists()


def test_without_the_spool_a_mosaic_larger_than_the_cache_is_decompressed_per_ccd(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    tmp_path: Path,
    gz_mosaic: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same file with the spool off (``ASTRID_PIPELINE_RAW_SPOOL_MB=0``): one fetch and
    one decompression per CCD, as before this change (what the test above would see if the
    spool did not work), and no spool file."""
    runtime = make_runtime(migrated_url, pipeline_raw_cache_mb=0, pipeline_raw_spool_mb=0)
    key = blob_key(gz_mosaic)
    ids = _ingest(runtime, tmp_path, gz_mosaic)
    products.clear_recent_products()
    fetched, unzipped = _count_decompressions(runtime, monkeypatch)
    for ccd in CCDS:
        assert preprocess_observation(runtime, ids[ccd]).status == "done"
    assert fetched.count(key) == len(CCDS)
    assert unzipped == ["memory"] * len(CCDS)
    assert not (products.raw_spool_dir(runtime) / f"{key}.fits").exists()


def test_a_file_larger_than_the_spool_limit_is_not_spooled(
    make_runtime: Callable[..., Runtime], tmp_path: Path, gz_mosaic: bytes
) -> None:
    """A spool limit below the file's decompressed size: nothing is written (no file, no
    temp file left), and the bytes come back as the in-memory path gives them."""
    from astrid.science.fitsio import uncompressed

    runtime = make_runtime(
        f"sqlite:///{tmp_path / 'a.db'}", pipeline_raw_cache_mb=0, pipeline_raw_spool_mb=1
    )
    key = runtime.blobs.put(gz_mosaic)
    assert len(uncompressed(gz_mosaic)) > 1024 * 1024
    raw = products.raw_fits(runtime, key, shared=True)
    assert isinstance(raw, bytes) and raw == uncompressed(gz_mosaic)
    folder = products.raw_spool_dir(runtime)
    assert not folder.exists() or list(folder.iterdir()) == []


def test_the_spool_drops_the_least_recently_used_file_beyond_its_limit(
    make_runtime: Callable[..., Runtime], tmp_path: Path, gz_mosaic: bytes
) -> None:
    """Two spooled files where only one fits: the older one (not used within the grace
    period) is removed when the second is written; a stale temp file of a dead process is
    removed too; a spool file used recently is never removed."""
    from astrid.science.fitsio import uncompressed

    size = len(uncompressed(gz_mosaic))
    mb = -(-size * 3 // 2 // (1024 * 1024))  # room for one file, not two
    assert size <= mb * 1024 * 1024 < 2 * size
    runtime = make_runtime(
        f"sqlite:///{tmp_path / 'a.db'}",
        pipeline_raw_cache_mb=0,
        pipeline_raw_spool_mb=mb,
        pipeline_raw_spool_dir=tmp_path / "spool",
    )
    first = runtime.blobs.put(gz_mosaic)
    second = runtime.blobs.put(gzip.compress(uncompressed(gz_mosaic), 6))  # other key
    assert first != second
    a = products.raw_fits(runtime, first, shared=True)
    assert isinstance(a, Path) and a.parent == tmp_path / "spool"
    stale = tmp_path / "spool" / ".tmp-dead.fits"
    stale.write_bytes(b"x")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    b = products.raw_fits(runtime, second, shared=True)
    assert isinstance(b, Path)
    assert a.exists() and b.exists()  # ``a`` was used within the grace period: kept
    assert not stale.exists()
    os.utime(a, (old, old))  # ``a`` last used two hours ago
    b.unlink()
    b = products.raw_fits(runtime, second, shared=True)
    assert isinstance(b, Path) and b.exists() and not a.exists()
    products.clear_recent_products()
    assert not b.exists()


def test_a_gzip_bomb_or_a_corrupt_stream_is_refused_by_name(
    make_runtime: Callable[..., Runtime], tmp_path: Path, gz_mosaic: bytes
) -> None:
    """More decompressed bytes than ``ASTRID_FITS_MAX_BYTES``: ImageTooLargeError before the
    limit is passed; a truncated gzip stream: InvalidFitsError; neither leaves a file."""
    runtime = make_runtime(
        f"sqlite:///{tmp_path / 'a.db'}",
        pipeline_raw_cache_mb=0,
        fits_max_bytes=1024 * 1024,
        pipeline_raw_spool_dir=tmp_path / "spool",
    )
    bomb = runtime.blobs.put(gzip.compress(bytes(64 * 1024 * 1024), 9))
    with pytest.raises(ImageTooLargeError, match="passes 1,048,576 bytes once decompressed"):
        products.raw_fits(runtime, bomb, shared=True)
    runtime = make_runtime(
        f"sqlite:///{tmp_path / 'b.db'}",
        pipeline_raw_cache_mb=0,
        pipeline_raw_spool_dir=tmp_path / "spool",
    )
    cut = runtime.blobs.put(gz_mosaic[: len(gz_mosaic) // 2])
    with pytest.raises(InvalidFitsError, match="gzip stream is corrupt or truncated"):
        products.raw_fits(runtime, cut, shared=True)
    folder = tmp_path / "spool"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_spool_file_removed_before_the_read_is_decompressed_again(
    make_runtime: Callable[..., Runtime], tmp_path: Path, gz_mosaic: bytes
) -> None:
    """The spool file is deleted (a real deletion, as another process's eviction would)
    between ``raw_fits`` handing its path and the reader opening it: ``read_raw``
    decompresses the file again, once, and the read goes on with the same pixels; deleted
    again under the second read, a named, retryable SpoolVanishedError; a read that fails
    on a file still there is the reader's own error, not retried."""
    from astrid.pipeline.runner import classify_error

    runtime = make_runtime(
        f"sqlite:///{tmp_path / 'a.db'}",
        pipeline_raw_cache_mb=0,
        pipeline_raw_spool_dir=tmp_path / "spool",
    )
    key = runtime.blobs.put(gz_mosaic)
    expected = read_image(gz_mosaic, "N4").data
    seen: list[bytes | Path] = []

    def slow_reader(src: bytes | Path) -> np.ndarray:
        seen.append(src)
        if len(seen) == 1:
            assert isinstance(src, Path) and src.is_file()
            src.unlink()  # evicted before this reader opened it
        return read_image(src, "N4").data

    got = products.read_raw(runtime, key, slow_reader, shared=True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    spooled = tmp_path / "spool" / f"{key}.fits"
    assert seen == [spooled, spooled] and spooled.is_file()  # spooled anew, then read

    def always_evicted(src: bytes | Path) -> np.ndarray:
        assert isinstance(src, Path)
        src.unlink()
        return read_image(src, "N4").data

    with pytest.raises(products.SpoolVanishedError, match="removed twice") as info:
        products.read_raw(runtime, key, always_evicted, shared=True)
    assert "ASTRID_PIPELINE_RAW_SPOOL_MB" in str(info.value)
    assert classify_error(info.value) == "transient"

    calls: list[int] = []

    def wrong_hdu(src: bytes | Path) -> np.ndarray:
        calls.append(1)
        return read_image(src, "NOPE").data

    from astrid.science.fitsio import NoImageDataError

    with pytest.raises(NoImageDataError):
        products.read_raw(runtime, key, wrong_hdu, shared=True)
    assert calls == [1]
    products.clear_recent_products()


def test_ingest_spools_a_large_gzipped_mosaic_once_for_itself_and_every_ccd(
    migrated_url: str,
    make_runtime: Callable[..., Runtime],
    tmp_path: Path,
    gz_mosaic: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cache 0 MB: ingest decompresses the gzipped mosaic once, as a stream, into
    ``<spool>/<key>.fits`` (never whole in memory) and reads each CCD from it; then the
    three CCDs' preprocess find it there: no blob fetch and no decompression at all, and
    each still reads its own mask plane."""
    runtime = make_runtime(migrated_url, pipeline_raw_cache_mb=0)
    key = blob_key(gz_mosaic)
    fetched, unzipped = _count_decompressions(runtime, monkeypatch)
    ids = _ingest(runtime, tmp_path, gz_mosaic)
    spooled = products.raw_spool_dir(runtime) / f"{key}.fits"
    assert unzipped == ["stream"] and spooled.is_file()
    fetched.clear()
    for ccd in CCDS:
        assert preprocess_observation(runtime, ids[ccd]).status == "done"
    assert fetched.count(key) == 0 and unzipped == ["stream"]
    masks = {ccd: _preprocessed_mask(runtime, ids[ccd]) for ccd in CCDS}
    assert [bool(masks[c][FLAGGED].all()) for c in CCDS] == [False, True, False]
    products.clear_recent_products()
    assert not spooled.exists()


def test_ingest_leaves_no_spool_file_for_a_single_image_or_a_refused_file(
    make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    """Cache 0 MB: a gzipped single-image file is ingested from the spool but not left
    there (its preprocess reads the blob); a gzipped file that is no image is refused by
    name and leaves nothing either."""
    from astropy.io import fits

    runtime = make_runtime(
        f"sqlite:///{tmp_path / 'a.db'}",
        pipeline_raw_cache_mb=0,
        pipeline_raw_spool_dir=tmp_path / "spool",
    )
    from astrid.store.db import upgrade

    upgrade(runtime.settings.database_url)
    survey = simulate_demo_survey(tmp_path / "sim", seed=4, n_fields=1, n_epochs=2)
    one = tmp_path / "one.fits.gz"
    one.write_bytes(gzip.compress(survey.paths[0].read_bytes(), 1))
    outcomes = ingest_paths(runtime, [one], survey="test")
    assert [o.status for o in outcomes] == ["ingested"]
    assert preprocess_observation(runtime, int(outcomes[0].observation_id or 0)).status == "done"
    table = tmp_path / "table.fits.gz"
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU()]).writeto(buf)
    table.write_bytes(gzip.compress(buf.getvalue()))
    refused = ingest_paths(runtime, [table], survey="test")
    assert refused[0].status == "failed" and "image" in str(refused[0].error)
    folder = tmp_path / "spool"
    assert not folder.exists() or [p.name for p in folder.iterdir()] == []


def test_preprocess_reads_within_the_configured_fits_limits(
    make_runtime: Callable[..., Runtime], tmp_path: Path, gz_mosaic: bytes
) -> None:
    """The preprocess reads apply ASTRID_FITS_MAX_BYTES (not the library default): the
    mosaic's bytes kept in memory by one CCD's preprocess are refused by name for the next
    CCD by a runtime whose limit is below the file's size."""
    from astrid.science.fitsio import uncompressed
    from astrid.store.db import upgrade

    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    runtime = make_runtime(url)
    ids = _ingest(runtime, tmp_path, gz_mosaic)
    assert preprocess_observation(runtime, ids["N4"]).status == "done"  # bytes kept
    small = len(uncompressed(gz_mosaic)) // 2
    strict = make_runtime(url, fits_max_bytes=small)
    out = preprocess_observation(strict, ids["N5"])
    assert out.status == "failed"
    assert f"{small:,}" in str(out.error), out.error
    products.clear_recent_products()
