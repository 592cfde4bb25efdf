"""Bounded reading of FITS bytes: streamed decompression, a linear header scan and limits.

A FITS file says how big it is before it is: each HDU's header (80-character cards in
2880-byte blocks, ending with ``END``) gives ``BITPIX`` and ``NAXISn`` and so the size of
the data unit that follows. :func:`scan_fits` walks the HDUs of a plain, gzip or bzip2
stream card by card (linear time), refuses a header longer than ``max_cards``, an invalid
``BITPIX``/``NAXIS``, an image of more than ``max_pixels`` or a file of more than
``max_bytes`` (decompressed) *before reading the data unit*, and a data unit shorter than its
header claims. Each HDU's layout (:class:`HduLayout`: kind, EXTNAME, EXTVER, shape, data
size) is what the reader chooses an image by, without reading a data unit. Compressed input
is decompressed in a stream (``gzip.GzipFile`` / ``bz2.BZ2File`` reads of at most one block
or one data unit at a time), so memory stays below ``max_bytes`` whatever the file claims;
a gzip bomb is cut at the first block that is not FITS or at the limit. Only after the scan
passes does astropy parse the file.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from astropy.io import fits

from astrid.science.fitserrors import ImageTooLargeError, InvalidFitsError

__all__ = ["FitsLimits", "HduLayout", "ScannedFits", "scan_fits"]

BLOCK = 2880
CARD = 80
_CHUNK = 1 << 20
_BITPIX = (8, 16, 32, 64, -32, -64)
_STRUCTURAL = frozenset(
    [
        "SIMPLE",
        "XTENSION",
        "BITPIX",
        "NAXIS",
        "PCOUNT",
        "GCOUNT",
        "GROUPS",
        "EXTNAME",
        "EXTVER",
        "ZIMAGE",
        "ZBITPIX",
        "ZNAXIS",
    ]
)


@dataclass(frozen=True)
class FitsLimits:
    """What a FITS file may claim before it is refused.

    Attributes
    ----------
    max_pixels : int
        Most pixels of one image HDU (product of its ``NAXISn`` or, tile-compressed,
        ``ZNAXISn``).
    max_bytes : int
        Most bytes of the whole FITS file once decompressed (headers + data units), and of
        one tile-compressed image once decompressed.
    max_cards : int
        Most 80-character cards in one HDU header.
    """

    max_pixels: int = 100_000_000
    max_bytes: int = 1 << 30
    max_cards: int = 10_000

    @classmethod
    def of(cls, config: Any) -> FitsLimits:
        """Limits from an object with ``fits_max_pixels``, ``fits_max_bytes`` and
        ``fits_max_cards`` attributes (the settings), defaults for the missing ones."""
        base = cls()
        return cls(
            max_pixels=int(getattr(config, "fits_max_pixels", base.max_pixels)),
            max_bytes=int(getattr(config, "fits_max_bytes", base.max_bytes)),
            max_cards=int(getattr(config, "fits_max_cards", base.max_cards)),
        )


@dataclass(frozen=True)
class HduLayout:
    """Where one HDU sits and what its header claims.

    ``kind`` is ``image`` (primary or IMAGE extension), ``compressed`` (a tile-compressed
    image in a BINTABLE) or ``other``; ``shape`` is the image shape in numpy order
    (..., NAXIS2, NAXIS1) — for ``compressed``, from ``ZNAXISn``. ``extver`` is the
    header's ``EXTVER`` (1 when absent or not a positive integer): HST's two chips are
    ``SCI,1`` and ``SCI,2``, each with its own ``ERR`` and ``DQ`` of the same EXTVER.
    """

    index: int
    kind: str
    name: str
    shape: tuple[int, ...]
    bitpix: int
    data_size: int
    extver: int = 1


@dataclass(frozen=True)
class ScannedFits:
    """A scanned file: what to hand to astropy (path or bytes) and its HDU layouts."""

    source: Path | bytes | io.BytesIO
    hdus: tuple[HduLayout, ...]
    compression: str  # "none" | "gzip" | "bzip2"


class _Stream(Protocol):
    """What the scan needs of a file: a plain file, BytesIO, GzipFile or BZ2File."""

    def read(self, n: int = ..., /) -> bytes: ...
    def tell(self) -> int: ...
    def seek(self, offset: int, whence: int = ..., /) -> int: ...
    def close(self) -> None: ...


def _int(cards: dict[str, str], key: str, index: int, default: int | None = None) -> int:
    text = cards.get(key)
    if text is None:
        if default is not None:
            return default
        raise InvalidFitsError(f"HDU {index}: the required keyword {key} is missing")
    value = _value(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFitsError(f"HDU {index}: {key} = {value!r} is not an integer")
    return value


def _value(card: str) -> Any:
    try:
        return fits.Card.fromstring(card).value
    except Exception as exc:  # astropy raises several types for a malformed card
        raise InvalidFitsError(f"malformed header card {card[:8].strip()!r}: {exc}") from exc


def _read(stream: _Stream, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream)."""
    parts: list[bytes] = []
    left = n
    while left > 0:
        part = stream.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _header_cards(
    stream: _Stream, index: int, limits: FitsLimits, used: int, keep: io.BytesIO | None
) -> tuple[dict[str, str], int] | None:
    """Structural cards of the next header and its length in bytes; None at the end."""
    cards: dict[str, str] = {}
    length = 0
    n_cards = 0
    while True:
        block = _read(stream, BLOCK)
        if length == 0:
            if not block or (index > 0 and not block.startswith(b"XTENSION")):
                if index == 0:
                    raise InvalidFitsError("the file is empty")
                return None  # end of the HDUs (trailing bytes are ignored, as astropy does)
            if index == 0 and not block.startswith(b"SIMPLE  ="):
                raise InvalidFitsError("the file does not start with SIMPLE = T: it is not FITS")
        if len(block) < BLOCK:
            raise InvalidFitsError(f"HDU {index}: the header is truncated (no END card)")
        length += BLOCK
        if used + length > limits.max_bytes:
            raise ImageTooLargeError(
                f"the FITS file is larger than the limit of {limits.max_bytes:,} bytes",
                hint="raise the FITS byte limit (ASTRID_FITS_MAX_BYTES) if the file is genuine",
            )
        if keep is not None:
            keep.write(block)
        text = block.decode("latin-1")
        for start in range(0, BLOCK, CARD):
            card = text[start : start + CARD]
            keyword = card[:8].rstrip()
            if keyword == "END":
                return cards, length
            n_cards += 1
            if n_cards > limits.max_cards:
                raise ImageTooLargeError(
                    f"HDU {index}: the header has more than {limits.max_cards:,} cards",
                    hint="raise the card limit (ASTRID_FITS_MAX_CARDS) if the file is genuine",
                )
            base = keyword.rstrip("0123456789")
            if (keyword in _STRUCTURAL or base in ("NAXIS", "ZNAXIS")) and keyword not in cards:
                cards[keyword] = card


def _axes(cards: dict[str, str], index: int, prefix: str) -> list[int]:
    naxis = _int(cards, prefix, index)
    if not 0 <= naxis <= 999:
        raise InvalidFitsError(f"HDU {index}: {prefix} = {naxis} is outside 0..999")
    axes = [_int(cards, f"{prefix}{i}", index) for i in range(1, naxis + 1)]
    for i, n in enumerate(axes, start=1):
        if n < 0:
            raise InvalidFitsError(f"HDU {index}: {prefix}{i} = {n} is negative")
    return axes


def _check_pixels(index: int, axes: list[int], limits: FitsLimits, bytes_per_pixel: int) -> None:
    pixels = math.prod(axes) if axes else 0
    dims = " × ".join(str(n) for n in axes)  # NAXIS1 × NAXIS2: width × height
    if pixels > limits.max_pixels:
        raise ImageTooLargeError(
            f"HDU {index} claims {dims} = {pixels:,} pixels, more than the limit of "
            f"{limits.max_pixels:,}",
            hint="raise the pixel limit (ASTRID_FITS_MAX_PIXELS) if the image is genuine",
        )
    if pixels * bytes_per_pixel > limits.max_bytes:
        raise ImageTooLargeError(
            f"HDU {index} claims {dims} pixels = {pixels * bytes_per_pixel:,} bytes, more than "
            f"the limit of {limits.max_bytes:,}",
            hint="raise the FITS byte limit (ASTRID_FITS_MAX_BYTES) if the image is genuine",
        )


def _layout(cards: dict[str, str], index: int, limits: FitsLimits) -> HduLayout:
    bitpix = _int(cards, "BITPIX", index)
    if bitpix not in _BITPIX:
        raise InvalidFitsError(
            f"HDU {index}: BITPIX = {bitpix} is not a valid FITS BITPIX (8, 16, 32, 64, -32, -64)"
        )
    axes = _axes(cards, index, "NAXIS")
    pcount = _int(cards, "PCOUNT", index, 0)
    gcount = _int(cards, "GCOUNT", index, 1)
    if pcount < 0 or gcount < 0:
        raise InvalidFitsError(f"HDU {index}: PCOUNT/GCOUNT are negative")
    groups = bool(axes) and axes[0] == 0 and "GROUPS" in cards
    pixels = (math.prod(axes[1:]) if groups else math.prod(axes)) if axes else 0
    size = abs(bitpix) // 8 * gcount * (pcount + pixels)
    xtension = str(_value(cards["XTENSION"])).strip().upper() if "XTENSION" in cards else ""
    name = str(_value(cards["EXTNAME"])).strip() if "EXTNAME" in cards else ""
    kind, shape = "other", tuple(reversed(axes))
    if index == 0 or xtension == "IMAGE":
        kind = "image" if axes and not groups else "other"
        if kind == "image":
            _check_pixels(index, axes, limits, abs(bitpix) // 8)
    elif xtension == "BINTABLE" and "ZIMAGE" in cards and _value(cards["ZIMAGE"]) is True:
        zbitpix = _int(cards, "ZBITPIX", index)
        if zbitpix not in _BITPIX:
            raise InvalidFitsError(f"HDU {index}: ZBITPIX = {zbitpix} is not a valid BITPIX")
        zaxes = _axes(cards, index, "ZNAXIS")
        _check_pixels(index, zaxes, limits, abs(zbitpix) // 8)
        kind, shape, bitpix = "compressed", tuple(reversed(zaxes)), zbitpix
    return HduLayout(
        index, kind, name or ("PRIMARY" if index == 0 else ""), shape, bitpix, size, _extver(cards)
    )


def _extver(cards: dict[str, str]) -> int:
    """``EXTVER`` when it is a positive integer, else 1 (the FITS default; a malformed one is
    not worth refusing a file for)."""
    if "EXTVER" not in cards:
        return 1
    try:
        value = fits.Card.fromstring(cards["EXTVER"]).value
    except Exception:  # astropy raises several types for a malformed card
        return 1
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _scan(stream: _Stream, limits: FitsLimits, keep: io.BytesIO | None) -> list[HduLayout]:
    hdus: list[HduLayout] = []
    used = 0
    while True:
        found = _header_cards(stream, len(hdus), limits, used, keep)
        if found is None:
            return hdus
        cards, header_len = found
        layout = _layout(cards, len(hdus), limits)
        padded = -(-layout.data_size // BLOCK) * BLOCK
        used += header_len
        if used + layout.data_size > limits.max_bytes:
            raise ImageTooLargeError(
                f"HDU {layout.index} claims a data unit of {layout.data_size:,} bytes: the file "
                f"would pass the limit of {limits.max_bytes:,} bytes",
                hint="raise the FITS byte limit (ASTRID_FITS_MAX_BYTES) if the file is genuine",
            )
        got = _consume(stream, padded, keep)
        if got < layout.data_size:
            raise InvalidFitsError(
                f"HDU {layout.index}: the data unit is truncated ({got:,} of "
                f"{layout.data_size:,} bytes)",
                hint="download the file again",
            )
        if keep is not None and got < padded:
            keep.write(bytes(padded - got))  # missing final padding: harmless, restore it
        used += padded
        hdus.append(layout)
        if got < padded:
            return hdus


def _consume(stream: _Stream, n: int, keep: io.BytesIO | None) -> int:
    """Read (into ``keep``) or skip ``n`` bytes; return how many were there."""
    if keep is None:
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        got = min(n, end - here)
        stream.seek(here + got)
        return got
    got = 0
    while got < n:
        part = stream.read(min(n - got, _CHUNK))
        if not part:
            break
        keep.write(part)
        got += len(part)
    return got


def _kind(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh":
        return "bzip2"
    return "none"


def scan_fits(source: str | Path | bytes, limits: FitsLimits | None = None) -> ScannedFits:
    """Scan a FITS file (path or bytes; plain, gzip or bzip2) within ``limits``.

    Returns
    -------
    ScannedFits
        For compressed input, the decompressed file in memory (at most ``limits.max_bytes``,
        never copied again); for
        plain input, the original path or bytes.

    Raises
    ------
    InvalidFitsError
        Not FITS, a malformed or truncated header, an invalid BITPIX/NAXIS, a truncated
        data unit, or a corrupt compressed stream.
    ImageTooLargeError
        More cards, pixels or bytes than ``limits`` allow (refused before the data is read).
    """
    limits = limits or FitsLimits()
    raw = bytes(source) if isinstance(source, bytes | bytearray | memoryview) else None
    path = None if raw is not None else Path(source)  # type: ignore[arg-type]
    if raw is not None:
        kind = _kind(raw[:4])
    else:
        with open(path, "rb") as fh:  # type: ignore[arg-type]
            kind = _kind(fh.read(4))
    where: Any = io.BytesIO(raw) if raw is not None else path
    stream: _Stream
    try:
        if kind == "none":
            stream = where if raw is not None else open(where, "rb")  # noqa: SIM115
            with contextlib.closing(stream):
                hdus = _scan(stream, limits, None)
            return ScannedFits(raw if raw is not None else where, tuple(hdus), kind)
        if kind == "gzip":
            stream = gzip.GzipFile(fileobj=where) if raw is not None else gzip.GzipFile(where)
        else:
            stream = bz2.BZ2File(where, "rb")
        keep = io.BytesIO()  # handed to astropy as is: the bytes are never copied
        with contextlib.closing(stream):
            hdus = _scan(stream, limits, keep)
        keep.seek(0)
        return ScannedFits(keep, tuple(hdus), kind)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise InvalidFitsError(f"the {kind} stream is corrupt or truncated: {exc}") from exc


def image_hdus(hdus: Iterable[HduLayout]) -> list[HduLayout]:
    """The 2-D image HDUs (plain or tile-compressed) of a scan: two axes, or more whose
    extra axes all have length 1 (a radio-style ``(1, 1, ny, nx)`` cube is one image)."""
    return [
        h
        for h in hdus
        if h.kind in ("image", "compressed")
        and len(h.shape) >= 2
        and all(n == 1 for n in h.shape[:-2])
    ]
