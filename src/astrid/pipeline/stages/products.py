"""FITS blobs of the stages' products: write an array with a header, read one back.

A product written with ``put_fits(..., keep=True)`` (one a later stage of the same
observation reads: the new image and its mask, the difference and the aligned image) is also
kept in this process, by blob key, within ``ASTRID_PIPELINE_RECENT_PRODUCTS_MB`` (oldest
dropped first): its
reader (:func:`read_array`, :func:`recent_image`) then gets the same array and header
without reading, hash-checking and parsing the blob again. The key is the content's hash,
so a kept entry is never stale.

:func:`fits_bytes` writes the common products (2-d float32 and uint8 arrays) without
astropy's ``writeto``: astropy builds and verifies the header, and :func:`header_unit` +
:func:`data_unit` give the bytes ``writeto`` would (the same cards, big-endian data
zero-padded to whole 2880-byte blocks). The detect stage's cutout FITS
(:mod:`astrid.pipeline.stages.stamps`) is written with the same two functions.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import os
import tempfile
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from astropy.io import fits

from astrid.pipeline.runner import TransientError
from astrid.runtime import Runtime
from astrid.science.fitsio import (
    FitsImage,
    FitsLimits,
    ImageTooLargeError,
    InvalidFitsError,
    uncompressed,
    validate_image,
)
from astrid.science.fitsscan import scan_fits
from astrid.science.fitswcs import celestial_wcs
from astrid.store.blobs import blob_key, put_parts

__all__ = [
    "FITS_BLOCK",
    "SpoolVanishedError",
    "clear_recent_products",
    "data_unit",
    "fits_bytes",
    "fits_parts",
    "header_unit",
    "ingest_fits",
    "put_fits",
    "raw_fits",
    "raw_spool_dir",
    "read_array",
    "read_raw",
    "read_spooled",
    "recent_image",
    "wcs_header",
]

_RECENT: OrderedDict[str, tuple[np.ndarray, fits.Header]] = OrderedDict()
_RECENT_LOCK = threading.Lock()
#: dtypes a kept array has exactly as the blob's reader would get it (no BZERO/BSCALE)
_KEPT_DTYPES = (np.dtype(np.float32), np.dtype(np.uint8))
#: FITS record size in bytes: a header and a data unit fill whole records
FITS_BLOCK = 2880


def header_unit(header: fits.Header) -> bytes:
    """``header``'s cards, ``END`` and blank padding to whole 2880-byte records: the bytes
    astropy's ``writeto`` writes for a verified header."""
    return header.tostring(sep="", endcard=True, padding=True).encode("ascii")


def data_unit(data: np.ndarray) -> tuple[memoryview, bytes]:
    """``data`` as a FITS data unit, in two pieces for ``b"".join``: the big-endian,
    row-major values (a byte view of a new array, or of ``data`` itself when it is already
    that) and the zero padding to whole 2880-byte records (no scaling: the caller's header
    has no BZERO/BSCALE). One join copies the pieces once: building ``bytes`` of the data
    first would copy a 16 MB image once more (the copy that made this no faster than
    ``writeto``)."""
    values = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder(">"))
    view = values.data.cast("B")
    return view, b"\0" * (-view.nbytes % FITS_BLOCK)


def _fast_dtype(data: np.ndarray) -> bool:
    """Whether ``data`` is a product :func:`fits_bytes` writes without ``writeto``: a
    non-empty 2-d float32 or uint8 array (either byte order)."""
    kind = (data.dtype.kind, data.dtype.itemsize)
    return data.ndim == 2 and data.size > 0 and kind in (("f", 4), ("u", 1))


#: bytes of big-endian data per piece of :func:`fits_parts` (a piece is hashed and written
#: while it is in the cache, from one buffer reused for the whole array)
_PIECE_BYTES = 1 << 20


def _product_header(header: fits.Header | None, extra: Mapping[str, Any] | None) -> fits.Header:
    hdr = fits.Header() if header is None else header.copy()
    hdr.strip()  # layout keywords (SIMPLE, BITPIX, NAXISn, EXTEND, CHECKSUM...) are rewritten
    for key in ("BZERO", "BSCALE", "EXTNAME"):
        hdr.remove(key, ignore_missing=True, remove_all=True)
    for key, value in (extra or {}).items():
        hdr[key] = value
    return hdr


def _data_pieces(data: np.ndarray) -> Iterator[memoryview | bytes]:
    """:func:`data_unit` of a 2-d array in pieces of whole rows, ~``_PIECE_BYTES`` each:
    byte views of ``data`` itself when it is big-endian (or bytes) and C-contiguous, else
    the rows converted into one reused buffer (each piece is to be consumed before the
    next is asked for), then the zero padding."""
    big = data.dtype.newbyteorder(">")
    rows = max(1, _PIECE_BYTES // max(1, data.shape[1] * data.dtype.itemsize))
    as_is = data.dtype == big and data.flags.c_contiguous
    buffer = None if as_is else np.empty((min(rows, data.shape[0]), data.shape[1]), big)
    nbytes = 0
    for start in range(0, data.shape[0], rows):
        block = data[start : start + rows]
        if buffer is None:
            view = block.data.cast("B")
        else:
            out = buffer[: block.shape[0]]
            np.copyto(out, block)  # the byte swap, into the reused buffer
            view = out.data.cast("B")
        nbytes += view.nbytes
        yield view
    yield b"\0" * (-nbytes % FITS_BLOCK)


def fits_parts(
    data: np.ndarray, header: fits.Header | None = None, extra: Mapping[str, Any] | None = None
) -> Iterator[bytes | memoryview]:
    """:func:`fits_bytes` as a sequence of pieces (their concatenation is the same bytes),
    for :func:`astrid.store.blobs.put_parts`: a 2-d float32 or uint8 array (the stages'
    products) is converted to big-endian a megabyte at a time into one reused buffer, so
    that no 16 MB copy is made (nor a second one by a join); each piece is valid until
    the next is asked for. The header is built and verified before the first piece."""
    hdr = _product_header(header, extra)
    if not _fast_dtype(data):
        buf = io.BytesIO()
        fits.PrimaryHDU(np.ascontiguousarray(data), header=hdr).writeto(buf)
        return iter((buf.getvalue(),))
    hdu = fits.PrimaryHDU(data, header=hdr)
    hdu.verify("exception")  # what writeto checks before writing
    head = header_unit(hdu.header)

    def pieces() -> Iterator[bytes | memoryview]:
        yield head
        yield from _data_pieces(data)

    return pieces()


def fits_bytes(
    data: np.ndarray, header: fits.Header | None = None, extra: Mapping[str, Any] | None = None
) -> bytes:
    """One primary HDU holding ``data`` with ``header``'s cards (layout cards rewritten).

    2-d float32 and uint8 arrays (the stages' products) skip astropy's ``writeto``: the
    same header, verified as ``writeto`` verifies it, then :func:`data_unit` (the same
    bytes, module docstring). Other arrays are written by ``writeto``.
    """
    hdr = _product_header(header, extra)
    if _fast_dtype(data):
        hdu = fits.PrimaryHDU(data, header=hdr)
        hdu.verify("exception")  # what writeto checks before writing
        return b"".join((header_unit(hdu.header), *data_unit(data)))
    buf = io.BytesIO()
    fits.PrimaryHDU(np.ascontiguousarray(data), header=hdr).writeto(buf)
    return buf.getvalue()


def _header_block(raw: bytes) -> bytes:
    """The primary header's cards of FITS bytes (up to and including END)."""
    for start in range(0, len(raw), 80):
        if raw[start : start + 8] == b"END     ":
            return raw[: start + 80]
    raise ValueError("no END card")


def put_fits(
    runtime: Runtime,
    data: np.ndarray,
    header: fits.Header | None = None,
    extra: Mapping[str, Any] | None = None,
    *,
    keep: bool = False,
) -> str:
    """Store :func:`fits_bytes` of ``data`` as a blob; its key. ``keep``: also keep the array
    (not to be changed by the caller afterwards) for this process's readers (module
    docstring). The bytes go to the store in pieces (:func:`fits_parts`,
    :func:`astrid.store.blobs.put_parts`): hashed and written once, without a whole copy."""
    parts = fits_parts(data, header, extra)
    head = next(parts)  # the header unit (or, for other arrays, the whole FITS)
    key = put_parts(runtime.blobs, _chain(head, parts))
    limit = runtime.settings.pipeline_recent_products_mb * 1024 * 1024
    if keep and 0 < data.nbytes <= limit and data.dtype in _KEPT_DTYPES and data.ndim == 2:
        kept = np.ascontiguousarray(data)
        kept.setflags(write=False)
        parsed = fits.Header.fromstring(_header_block(bytes(head)))
        with _RECENT_LOCK:
            _RECENT[key] = (kept, parsed)
            _RECENT.move_to_end(key)
            total = sum(a.nbytes for a, _ in _RECENT.values())
            while total > limit:
                _, (old, _) = _RECENT.popitem(last=False)
                total -= old.nbytes
    return key


def _chain(
    first: bytes | memoryview, rest: Iterator[bytes | memoryview]
) -> Iterator[bytes | memoryview]:
    yield first
    yield from rest


def _recent(runtime: Runtime, key: str) -> tuple[np.ndarray, fits.Header] | None:
    if runtime.settings.pipeline_recent_products_mb <= 0:
        return None
    with _RECENT_LOCK:
        return _RECENT.get(key)


def read_array(runtime: Runtime, key: str) -> tuple[np.ndarray, fits.Header]:
    """The primary array and header of the FITS blob ``key`` (fresh copies)."""
    kept = _recent(runtime, key)
    if kept is not None:
        return kept[0].copy(), kept[1].copy()
    with fits.open(io.BytesIO(runtime.blobs.get(key))) as hdul:
        return np.array(hdul[0].data), hdul[0].header.copy()


def recent_image(runtime: Runtime, key: str) -> FitsImage | None:
    """The image blob ``key`` as :func:`astrid.science.fitsio.read_image` reads it, when
    this process kept it (a single primary HDU written by :func:`put_fits`), else None."""
    kept = _recent(runtime, key)
    if kept is None or kept[0].dtype != np.float32:
        return None
    image = FitsImage(kept[0].copy(), kept[1].copy(), 0, "PRIMARY")
    validate_image(image)
    return image


_RAW: OrderedDict[str, bytes] = OrderedDict()
_RAW_LOCK = threading.Lock()
#: spool files this process wrote (:func:`clear_recent_products` removes them)
_SPOOLED: set[Path] = set()
#: a spool file used (read or written) this recently is never evicted: a reader that was
#: just handed its path opens it within that time
_SPOOL_GRACE_S = 60.0
#: a temp file left by a process that died mid-spool is removed after this long
_SPOOL_STALE_S = 3600.0
_CHUNK = 1 << 22


def raw_spool_dir(runtime: Runtime) -> Path:
    """Where :func:`raw_fits` spools decompressed multi-image files
    (``ASTRID_PIPELINE_RAW_SPOOL_DIR``, default ``<data_dir>/cache/raw``)."""
    chosen = runtime.settings.pipeline_raw_spool_dir
    return Path(chosen) if chosen else Path(runtime.settings.data_dir) / "cache" / "raw"


def raw_fits(runtime: Runtime, key: str, *, shared: bool) -> bytes | Path:
    """The FITS bytes of raw blob ``key`` with any gzip/bzip2 layer removed
    (:func:`astrid.science.fitsio.uncompressed`), or the path of a plain FITS file holding
    them (the caller reads it with ``read_image(path, hdu)``, which reads that HDU only).

    ``shared``: the blob holds several observations (a mosaic's CCDs, HST's chips): the
    bytes are then kept in this process, least recently used dropped first, within
    ``ASTRID_PIPELINE_RAW_CACHE_MB``, so that preprocessing the file's next CCD neither
    reads, hash-checks nor decompresses it again (N CCDs of a gzipped file: one
    decompression instead of N). The key is the stored bytes' hash, so a kept entry is
    never stale.

    A shared file whose decompressed size is above that limit (a full DECam exposure,
    ~2 GB) is decompressed once, as a stream, into ``<spool dir>/<key>.fits``
    (:func:`raw_spool_dir`; at most ``ASTRID_PIPELINE_RAW_SPOOL_MB`` of such files, least
    recently used removed first, never one used in the last minute), and its path is
    returned: every CCD of it then reads only its own HDUs from disk, and the process never
    holds the whole file. The name is the stored file's hash, so a spooled file is never
    stale; it is written to a temp file and renamed, so a reader never sees it half
    written. A file larger than the spool limit (or with the spool off, 0) is decompressed
    again per CCD, as before. Ingest spools a large compressed file the same way
    (:func:`ingest_fits`), so preprocess usually finds it there. Read the path through
    :func:`read_raw`: a spool file evicted before its reader opened it is then decompressed
    again instead of failing with a bare ``FileNotFoundError``.

    Raises
    ------
    FitsError
        :class:`~astrid.science.fitsio.InvalidFitsError` (not FITS, a corrupt compressed
        stream) or :class:`~astrid.science.fitsio.ImageTooLargeError` (more decompressed
        bytes than ``ASTRID_FITS_MAX_BYTES``), as :func:`uncompressed` raises them.
    """
    settings = runtime.settings
    limit = settings.pipeline_raw_cache_mb * 1024 * 1024
    if shared and limit > 0:
        with _RAW_LOCK:
            kept = _RAW.get(key)
            if kept is not None:
                _RAW.move_to_end(key)
                return kept
    disk = settings.pipeline_raw_spool_mb * 1024 * 1024 if shared else 0
    spooled = raw_spool_dir(runtime) / f"{key}.fits"
    if disk > 0:
        try:
            os.utime(spooled)  # used now: the eviction keeps it
            return spooled
        except FileNotFoundError:
            pass
    data = runtime.blobs.get(key)
    if disk > 0:
        got = _spool(data, spooled, limit, disk, FitsLimits.of(settings))
        if isinstance(got, Path):
            _evict(spooled.parent, disk, got)
            return got
        # above the spool limit: decompressed whole in memory, as before the spool
        raw = got if got is not None else uncompressed(data, limits=FitsLimits.of(settings))
    else:
        raw = uncompressed(data)
    if shared and 0 < len(raw) <= limit:
        with _RAW_LOCK:
            _RAW[key] = raw
            _RAW.move_to_end(key)
            total = sum(len(b) for b in _RAW.values())
            while total > limit:
                _, old = _RAW.popitem(last=False)
                total -= len(old)
    return raw


class SpoolVanishedError(TransientError):
    """A spool file was removed under its reader twice in a row (decompressed again after
    the first time): the spool is too small for the files being processed at once. Worth
    retrying (the runner does)."""


T = TypeVar("T")

#: what a reader of a vanished spool file can see: the open itself (FileNotFoundError) or
#: the header scan's wrapping of it (InvalidFitsError from an OSError)
_VANISHED = (FileNotFoundError, InvalidFitsError)


def read_spooled(
    source: bytes | Path, again: Callable[[], bytes | Path], read: Callable[[bytes | Path], T]
) -> T:
    """``read(source)``, robust to a spool file removed before or while ``read`` opens it
    (the eviction keeps a file used in the last minute, but a reader may be slower): when
    ``source`` is a path that no longer exists after ``read`` failed, ``again()`` gives it
    anew (decompressed again, once) and ``read`` runs on that. A failure of a file that is
    still there is ``read``'s own (a genuine :class:`InvalidFitsError` is not retried).

    Raises
    ------
    SpoolVanishedError
        The file given anew was removed as well before ``read`` could open it.
    """
    if not isinstance(source, Path):
        return read(source)
    try:
        return read(source)
    except _VANISHED:
        if source.exists():
            raise
    fresh = again()
    try:
        return read(fresh)
    except _VANISHED as exc:
        if not isinstance(fresh, Path) or fresh.exists():
            raise
        raise SpoolVanishedError(
            f"the spooled raw file {fresh.name} was removed twice while it was being read",
            hint="raise ASTRID_PIPELINE_RAW_SPOOL_MB: the spool is too small for the files "
            "processed at once",
        ) from exc


def read_raw(runtime: Runtime, key: str, read: Callable[[bytes | Path], T], *, shared: bool) -> T:
    """``read`` of :func:`raw_fits` (``read`` opens the path or parses the bytes it is
    given), decompressing the file again, once, when its spool file was removed before
    ``read`` opened it (:func:`read_spooled`): never an unnamed ``FileNotFoundError``."""
    return read_spooled(
        raw_fits(runtime, key, shared=shared),
        lambda: raw_fits(runtime, key, shared=shared),
        read,
    )


def ingest_fits(runtime: Runtime, data: bytes) -> bytes | Path:
    """The FITS bytes of a file being ingested with any gzip/bzip2 layer removed, checked
    within ``ASTRID_FITS_MAX_*`` (what ``uncompressed`` gives), or, for a compressed file
    whose decompressed size is above ``ASTRID_PIPELINE_RAW_CACHE_MB``, the path of its spool
    file: it is decompressed once, as a stream, into ``<spool dir>/<blob key>.fits``
    (within ``ASTRID_PIPELINE_RAW_SPOOL_MB``, the same file :func:`raw_fits` gives), so
    that ingest never holds the whole decompressed file, and preprocessing the file's CCDs
    afterwards finds it there (one decompression for ingest and every CCD). A file already
    spooled is used as it is. A plain file is its own bytes (nothing to decompress); a
    file above the spool limit, or with the spool off, is decompressed in memory as before.

    Raises
    ------
    FitsError
        :class:`InvalidFitsError` or :class:`ImageTooLargeError`, as :func:`raw_fits`.
    """
    settings = runtime.settings
    limits = FitsLimits.of(settings)
    memory = settings.pipeline_raw_cache_mb * 1024 * 1024
    disk = settings.pipeline_raw_spool_mb * 1024 * 1024
    compressed = data[:2] == b"\x1f\x8b" or data[:3] == b"BZh"
    if disk <= 0 or not compressed:
        return uncompressed(data, limits=limits)
    spooled = raw_spool_dir(runtime) / f"{blob_key(data)}.fits"
    try:
        os.utime(spooled)  # spooled already (the same file ingested again): used now
        return spooled
    except FileNotFoundError:
        pass
    got = _spool(data, spooled, memory, disk, limits)
    if isinstance(got, Path):
        _evict(spooled.parent, disk, got)
        return got
    return got if got is not None else uncompressed(data, limits=limits)


def _spool(
    data: bytes, path: Path, memory: int, disk: int, limits: FitsLimits
) -> bytes | Path | None:
    """Decompress ``data`` (gzip, bzip2 or plain) once, as a stream: the checked FITS bytes
    when they fit in ``memory`` bytes, else ``path`` once they are written there (a plain
    FITS file, checked by a header scan), else None (more than ``disk`` bytes: nothing kept).
    """
    head = data[:4]
    source = io.BytesIO(data)
    stream: Any
    if head[:2] == b"\x1f\x8b":
        stream, kind = gzip.GzipFile(fileobj=source), "gzip"
    elif head[:3] == b"BZh":
        stream, kind = bz2.BZ2File(source), "bzip2"
    else:
        stream, kind = source, "none"
    kept = io.BytesIO()
    out: Any = None
    tmp: Path | None = None
    total = 0
    try:
        with contextlib.closing(stream):
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
                if total > limits.max_bytes:
                    raise ImageTooLargeError(
                        f"the file passes {limits.max_bytes:,} bytes once decompressed",
                        hint="raise the FITS byte limit (ASTRID_FITS_MAX_BYTES) if the file "
                        "is genuine",
                    )
                if total > disk:
                    return None  # too large to spool: the caller decompresses it as before
                if out is None and total <= memory:
                    kept.write(chunk)
                    continue
                if out is None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".fits")
                    tmp, out = Path(name), open(fd, "wb")  # noqa: SIM115
                    out.write(kept.getbuffer())
                    kept = io.BytesIO()
                out.write(chunk)
        if out is None:
            return uncompressed(kept.getvalue(), limits=limits)  # a header scan, no copy
        out.close()
        assert tmp is not None
        scan_fits(tmp, limits)  # a truncated or non-FITS file is refused before it is kept
        os.replace(tmp, path)
        tmp = None
        with _RAW_LOCK:
            _SPOOLED.add(path)
        return path
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidFitsError(f"the {kind} stream is corrupt or truncated: {exc}") from exc
    finally:
        if out is not None and not out.closed:
            out.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _evict(folder: Path, disk: int, keep: Path) -> None:
    """Remove the least recently used spool files until those left total at most ``disk``
    bytes (never ``keep``, nor one used within :data:`_SPOOL_GRACE_S`), and temp files
    of processes that died mid-spool."""
    now = time.time()
    files: list[tuple[float, int, Path]] = []
    for entry in folder.iterdir():
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue  # another process removed it
        if entry.name.startswith(".tmp-"):
            if now - st.st_mtime > _SPOOL_STALE_S:
                entry.unlink(missing_ok=True)
            continue
        if entry.suffix == ".fits":
            files.append((st.st_mtime, st.st_size, entry))
    total = sum(size for _, size, _ in files)
    for mtime, size, entry in sorted(files):
        if total <= disk:
            break
        if entry == keep or now - mtime < _SPOOL_GRACE_S:
            continue
        entry.unlink(missing_ok=True)
        total -= size


def clear_recent_products() -> None:
    """Forget the kept products and raw files, and remove the files this process spooled
    (tests; a process that wants its memory and disk back)."""
    with _RECENT_LOCK:
        _RECENT.clear()
    with _RAW_LOCK:
        _RAW.clear()
        spooled = list(_SPOOLED)
        _SPOOLED.clear()
    for path in spooled:
        path.unlink(missing_ok=True)


def wcs_header(header: fits.Header) -> fits.Header:
    """The celestial WCS cards of ``header`` alone."""
    return celestial_wcs(header).to_header(relax=True)
