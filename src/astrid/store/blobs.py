"""Content-addressed object storage and dataset manifests.

A blob's key is the sha256 of its bytes (64 hex digits). Writes are idempotent (the same
bytes always give the same key and are stored once) and reads verify the bytes against the
key. Two backends share one interface, chosen by URL:

``file:///path/to/blobs``            local filesystem (default), atomic and durable writes
                                     (temp file, fsync, rename)
``s3://bucket/optional/prefix``      any S3-compatible service (AWS S3, Cloudflare R2, MinIO);
                                     endpoint and credentials from settings
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from astrid.errors import AstridError

__all__ = [
    "BlobIntegrityError",
    "BlobNotFoundError",
    "BlobStore",
    "BlobStoreError",
    "DatasetManifest",
    "LocalBlobStore",
    "S3BlobStore",
    "blob_key",
    "open_blob_store",
    "put_parts",
]


class BlobStoreError(AstridError):
    """The blob store is misconfigured or unreachable."""


class BlobNotFoundError(BlobStoreError):
    """No blob is stored under the key."""


class BlobIntegrityError(BlobStoreError):
    """The stored bytes no longer hash to their key (corruption or tampering)."""


#: The last large ``bytes`` hashed and its key: ingest asks for the key of the same raw
#: file several times (its run key, the observation's content hash, the blob's put), ~60 ms
#: each at 16 MB. ``bytes`` are immutable and the reference held keeps the object (and so
#: its id) alive, so an identical object has the same key.
_last_key: tuple[bytes, str] | None = None
_MEMO_MIN_BYTES = 1 << 20


def blob_key(data: bytes) -> str:
    """The content key of ``data``: its sha256 as 64 lowercase hex digits."""
    global _last_key
    last = _last_key
    if last is not None and last[0] is data:
        return last[1]
    key = hashlib.sha256(data).hexdigest()
    if type(data) is bytes and len(data) >= _MEMO_MIN_BYTES:
        _last_key = (data, key)
    return key


def _check_key(key: str) -> str:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise BlobNotFoundError(f"{key!r} is not a blob key (64 lowercase hex digits)")
    return key


def _verify(key: str, data: bytes) -> bytes:
    actual = blob_key(data)
    if actual != key:
        raise BlobIntegrityError(
            f"blob {key} is corrupt: its bytes hash to {actual}",
            hint="restore it from the original source and ingest again",
        )
    return data


class BlobStore(Protocol):
    """The interface every backend implements."""

    url: str

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its key (no-op if already stored)."""
        ...

    def get(self, key: str) -> bytes:
        """Return the verified bytes of ``key``."""
        ...

    def exists(self, key: str) -> bool:
        """True if a blob is stored under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the blob (no error if absent)."""
        ...

    def keys(self) -> Iterator[str]:
        """Every stored key."""
        ...

    def check(self) -> None:
        """Raise :class:`BlobStoreError` unless the store is reachable and writable."""
        ...


class LocalBlobStore:
    """Blobs as files ``<root>/ab/cd/abcd...`` written atomically and durably (a ``.tmp-``
    temp file, fsync, rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = self.root.resolve().as_uri()

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        key = blob_key(data)
        path = self._path(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def put_parts(self, parts: Iterable[bytes | memoryview]) -> str:
        """Store the concatenation of ``parts`` and return its key, hashing and writing each
        part once as it comes (``put`` needs the whole blob as one ``bytes`` first: for a
        16 MB product, a joined copy). The key is known only at the end, so the parts go to
        a temp file that is renamed to the key's path (atomic, fsynced as ``put``), or
        removed when that blob is stored already."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        try:
            with open(fd, "wb", buffering=0, closefd=True) as fh:
                for part in parts:
                    digest.update(part)
                    view = memoryview(part).cast("B")
                    while view.nbytes:  # a raw write may take fewer bytes than given
                        view = view[fh.write(view) or 0 :]
                os.fsync(fh.fileno())
            key = digest.hexdigest()
            path = self._path(key)
            if path.exists():
                Path(tmp).unlink()
                return key
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(f"no blob {key} in {self.url}") from None
        return _verify(key, data)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for path in self.root.glob("??/??/*"):
            if not path.name.startswith(".tmp-"):
                yield path.name

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".probe"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise BlobStoreError(f"blob folder {self.root} is not writable: {exc}") from exc


class S3BlobStore:
    """Blobs as objects ``<prefix>/ab/<key>`` in an S3-compatible bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
    ) -> None:
        try:  # optional dependency (the ``s3`` extra)
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise BlobStoreError("S3 storage needs boto3", hint="pip install 'astrid[s3]'") from exc
        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
        self._client_error: Any = ClientError
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=None if region in (None, "auto") and not endpoint_url else region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def _object(self, key: str) -> str:
        _check_key(key)
        name = f"{key[:2]}/{key}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _error(self, exc: Exception) -> BlobStoreError:
        return BlobStoreError(f"S3 bucket {self.bucket!r} failed: {exc}")

    def put(self, data: bytes) -> str:
        key = blob_key(data)
        if self.exists(key):
            return key
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._object(key),
                Body=data,
                ChecksumAlgorithm="SHA256",
            )
        except self._errors as exc:
            raise self._error(exc) from exc
        return key

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._object(key))
            data = response["Body"].read()
        except self._client_error as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobNotFoundError(f"no blob {key} in {self.url}") from None
            raise self._error(exc) from exc
        except self._errors as exc:
            raise self._error(exc) from exc
        return _verify(key, data)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except self._client_error as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error(exc) from exc
        except self._errors as exc:
            raise self._error(exc) from exc
        return True

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._object(key))
        except self._errors as exc:
            raise self._error(exc) from exc

    def keys(self) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        prefix = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"].rsplit("/", 1)[-1]

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            raise self._error(exc) from exc


def put_parts(store: BlobStore, parts: Iterable[bytes | memoryview]) -> str:
    """Store the concatenation of ``parts`` in ``store``; its key. A local store hashes and
    writes the parts one by one (:meth:`LocalBlobStore.put_parts`); others get them joined
    into one ``bytes`` (:meth:`BlobStore.put`)."""
    streamed = getattr(store, "put_parts", None)
    if streamed is not None:
        key: str = streamed(parts)
        return key
    return store.put(b"".join(parts))


def open_blob_store(
    url: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> BlobStore:
    """Open the blob store named by ``url`` (``file://...`` or ``s3://bucket/prefix``)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme == "file" else url
        return LocalBlobStore(path)
    if parsed.scheme in ("s3", "r2"):
        if not parsed.netloc:
            raise BlobStoreError(f"storage URL {url!r} names no bucket", hint="use s3://bucket")
        return S3BlobStore(
            parsed.netloc,
            parsed.path,
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )
    raise BlobStoreError(
        f"unsupported storage URL {url!r}", hint="use file:///path or s3://bucket/prefix"
    )


@dataclass(frozen=True)
class DatasetManifest:
    """A dataset version: the hash of its sorted member keys (DVC-style).

    Attributes
    ----------
    name : str
        Dataset name.
    members : tuple of (str, dict)
        Sorted (blob key, metadata such as the label) pairs.
    """

    name: str
    members: tuple[tuple[str, dict[str, Any]], ...]

    @classmethod
    def build(
        cls, name: str, members: Iterable[tuple[str, dict[str, Any]]] | Iterable[str]
    ) -> DatasetManifest:
        """Make a manifest from keys or (key, metadata) pairs; duplicates are kept once."""
        pairs: dict[str, dict[str, Any]] = {}
        for item in members:
            key, meta = (item, {}) if isinstance(item, str) else item
            pairs[_check_key(key)] = dict(meta)
        return cls(name=name, members=tuple(sorted(pairs.items())))

    @property
    def version(self) -> str:
        """sha256 of the newline-joined sorted member keys."""
        return hashlib.sha256("\n".join(k for k, _ in self.members).encode()).hexdigest()

    def to_bytes(self) -> bytes:
        """Canonical JSON of the manifest."""
        body = {
            "name": self.name,
            "version": self.version,
            "members": [{"key": k, **m} for k, m in self.members],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DatasetManifest:
        """Parse :meth:`to_bytes` output, checking the recorded version."""
        body = json.loads(data)
        members = [(m.pop("key"), m) for m in body["members"]]
        manifest = cls.build(body["name"], members)
        if manifest.version != body["version"]:
            raise BlobIntegrityError(f"manifest {body['name']!r} does not match its version")
        return manifest

    def save(self, store: BlobStore) -> str:
        """Store the manifest as a blob and return its key."""
        return store.put(self.to_bytes())
