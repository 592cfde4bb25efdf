"""Content-addressed blobs on the local filesystem and a real S3-protocol server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from astrid.store.blobs import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobStore,
    BlobStoreError,
    DatasetManifest,
    LocalBlobStore,
    S3BlobStore,
    blob_key,
    open_blob_store,
    put_parts,
)
from tests._s3 import s3_client


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return open_blob_store((tmp_path / "blobs").as_uri())
    endpoint = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return open_blob_store(
        f"s3://{bucket}/astrid",
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id="test",
        secret_access_key="test",
    )


def test_put_get_roundtrip_is_idempotent(store: BlobStore) -> None:
    data = b"SIMPLE  = T" + bytes(range(256)) * 10
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.put(data) == key
    assert store.get(key) == data
    assert store.exists(key)
    assert list(store.keys()) == [key]
    store.delete(key)
    assert not store.exists(key)
    with pytest.raises(BlobNotFoundError):
        store.get(key)
    store.check()


def test_bad_keys_are_refused(store: BlobStore) -> None:
    for bad in ("", "abc", "../../etc/passwd", "G" * 64):
        with pytest.raises(BlobNotFoundError, match="not a blob key"):
            store.get(bad)


def test_local_corruption_is_detected(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    key = store.put(b"original bytes")
    (tmp_path / key[:2] / key[2:4] / key).write_bytes(b"tampered bytes")
    with pytest.raises(BlobIntegrityError, match=f"blob {key} is corrupt"):
        store.get(key)


def test_s3_corruption_is_detected(s3_server: str, s3_bucket: str) -> None:
    client = s3_client(s3_server)
    store = S3BlobStore(s3_bucket, "p", client=client)
    key = store.put(b"original bytes")
    client.put_object(Bucket=s3_bucket, Key=f"p/{key[:2]}/{key}", Body=b"tampered")
    with pytest.raises(BlobIntegrityError):
        store.get(key)


def test_unreachable_s3_is_a_named_error() -> None:
    store = open_blob_store(
        "s3://nobucket",
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        access_key_id="x",
        secret_access_key="y",
    )
    assert isinstance(store, S3BlobStore)
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(BlobStoreError, match="nobucket"):
        store.check()


def test_unsupported_url() -> None:
    with pytest.raises(BlobStoreError, match="unsupported storage URL"):
        open_blob_store("ftp://example/blobs")
    with pytest.raises(BlobStoreError, match="names no bucket"):
        open_blob_store("s3://")


def test_manifest_version_is_hash_of_sorted_member_keys(store: BlobStore) -> None:
    keys = [store.put(f"stamp {i}".encode()) for i in range(5)]
    a = DatasetManifest.build("train", [(k, {"label": i % 2}) for i, k in enumerate(keys)])
    b = DatasetManifest.build(
        "train", [(k, {"label": i % 2}) for i, k in reversed(list(enumerate(keys)))]
    )
    assert a.version == b.version == hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    c = DatasetManifest.build("train", keys[:4])
    assert c.version != a.version
    manifest_key = a.save(store)
    loaded = DatasetManifest.from_bytes(store.get(manifest_key))
    assert loaded == a
    assert blob_key(a.to_bytes()) == manifest_key


def test_blob_key_of_large_bytes_is_remembered_only_for_the_same_object() -> None:
    big = bytes(range(256)) * 8192  # 2 MB: remembered
    assert blob_key(big) == hashlib.sha256(big).hexdigest()
    assert blob_key(big) == hashlib.sha256(big).hexdigest()
    other = bytearray(big)  # mutable: hashed every time, never remembered
    assert blob_key(other) == blob_key(big)
    other[0] ^= 1
    assert blob_key(other) == hashlib.sha256(bytes(other)).hexdigest() != blob_key(big)
    copy = bytes(other)  # equal bytes in another object: hashed, not taken from the memo
    assert blob_key(copy) == hashlib.sha256(copy).hexdigest()


def test_put_parts_stores_the_concatenation_once(store: BlobStore, tmp_path: Path) -> None:
    """Parts (bytes and memoryviews, empty ones too) give the key and bytes of their
    concatenation; storing them again keeps one blob and leaves no temp file."""
    parts = [b"SIMPLE  = T", memoryview(bytes(range(256)) * 40), b"", memoryview(b"end")]
    whole = b"".join(parts)
    key = put_parts(store, iter(parts))
    assert key == hashlib.sha256(whole).hexdigest() == store.put(whole)
    assert store.get(key) == whole
    assert put_parts(store, [whole[:5], whole[5:]]) == key
    assert list(store.keys()) == [key]
    if isinstance(store, LocalBlobStore):
        assert sorted(p.name for p in store.root.rglob("*") if p.is_file()) == [key]


def test_put_parts_that_fail_leave_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")

    def parts() -> Iterator[bytes]:
        yield b"a" * 100
        raise RuntimeError("the writer stopped")

    with pytest.raises(RuntimeError, match="the writer stopped"):
        put_parts(store, parts())
    assert [p for p in store.root.rglob("*") if p.is_file()] == []
