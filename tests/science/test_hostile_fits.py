"""Damaged and hostile FITS files: each is refused with one line naming the problem, and a
file that claims to be huge is refused before its data is read, with memory bounded."""

from __future__ import annotations

import bz2
import gzip
import io
import tracemalloc
import zlib

import numpy as np
import pytest

from astrid.science.fitsio import (
    FitsError,
    FitsLimits,
    ImageTooLargeError,
    InvalidFitsError,
    read_image,
    science_hdus,
)
from astrid.science.fitsmeta import image_metadata
from tests.damaged_fits import BLOCK, damaged_files, good_fits

MiB = 1 << 20


def header_block(cards: list[str]) -> bytes:
    """FITS header bytes: 80-character cards, END, padded to 2880-byte blocks."""
    text = "".join(card.ljust(80) for card in [*cards, "END"])
    text += " " * (-len(text) % BLOCK)
    return text.encode("ascii")


def image_header(nx: int, ny: int, bitpix: int = -32, primary: bool = True) -> list[str]:
    first = "SIMPLE  =                    T" if primary else "XTENSION= 'IMAGE   '"
    cards = [first, f"BITPIX  = {bitpix:20d}", "NAXIS   =                    2"]
    cards += [f"NAXIS1  = {nx:20d}", f"NAXIS2  = {ny:20d}"]
    if not primary:
        cards += ["PCOUNT  =                    0", "GCOUNT  =                    1"]
    return cards


def gzip_stream(parts: list[tuple[bytes, int]]) -> bytes:
    """Gzip ``bytes × count`` pieces in a stream (the plain file is never built)."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    out = [comp.compress(chunk) for chunk, count in parts for _ in range(count)]
    out.append(comp.flush())
    return b"".join(out)


@pytest.mark.parametrize("name", sorted(damaged_files()))
def test_each_damaged_file_is_refused_with_one_line_naming_the_problem(name: str) -> None:
    data, words = damaged_files()[name]
    with pytest.raises(FitsError) as info:
        # what ingest does: each science image (one per CCD of a mosaic), then its metadata
        for index, _ in science_hdus(data):
            image = read_image(data, index, validate=True)
            image_metadata(image.header, image.data.shape)
    message = str(info.value)
    assert words in message and "\n" not in message


def test_a_good_file_still_reads() -> None:
    image = read_image(good_fits())
    meta = image_metadata(image.header, image.data.shape)
    assert image.data.shape == (40, 50) and meta.ra == pytest.approx(150.0, abs=0.1)


def test_missing_final_padding_is_not_truncation() -> None:
    good = good_fits()
    end = len(good) - (-(40 * 50 * 4) % BLOCK)  # drop the zero padding after the data
    assert read_image(good[:end]).data.shape == (40, 50)


def test_gzip_bomb_of_zeros_is_cut_at_the_first_block() -> None:
    bomb = gzip_stream([(bytes(MiB), 256)])  # 256 MiB of zeros → about 1.1 MB
    assert len(bomb) < 2 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(InvalidFitsError, match="not FITS"):
            read_image(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB


def test_22000_square_gzip_is_refused_from_its_header() -> None:
    claim = gzip_stream([(header_block(image_header(22000, 22000)), 1), (bytes(MiB), 16)])
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match=r"22000 × 22000 = 484,000,000 pixels"):
            read_image(claim)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB


def test_many_extensions_stop_at_the_byte_limit_with_memory_bounded() -> None:
    """Each HDU is within the pixel limit; together they pass the byte limit."""
    plane = header_block(image_header(1024, 1024, primary=False)) + bytes(4 * MiB)
    plane += bytes(-len(plane) % BLOCK)
    primary = header_block([*image_header(0, 0)[:2], "NAXIS   =                    0"])
    bomb = gzip_stream([(primary, 1), (plane, 64)])  # 256 MiB once decompressed
    limits = FitsLimits(max_bytes=32 * MiB)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match="33,554,432 bytes"):
            read_image(bomb, limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * limits.max_bytes


def test_bzip2_reads_and_a_corrupt_gzip_is_named() -> None:
    good = good_fits()
    assert read_image(bz2.compress(good)).data.shape == (40, 50)
    assert read_image(gzip.compress(good)).data.shape == (40, 50)
    with pytest.raises(InvalidFitsError, match="gzip stream is corrupt"):
        read_image(gzip.compress(good)[:-200])


def test_pixel_limit_is_configurable() -> None:
    good = good_fits()
    with pytest.raises(ImageTooLargeError, match="50 × 40 = 2,000 pixels"):
        read_image(good, limits=FitsLimits(max_pixels=1999))
    assert read_image(good, limits=FitsLimits(max_pixels=2000)).data.shape == (40, 50)


def _many_cards(n: int) -> bytes:
    sim = read_image(good_fits())
    cards = [c.image for c in sim.header.cards if c.keyword not in ("", "END")]
    cards += [f"HIERARCH K{i:07d} = {i}" for i in range(n - len(cards))]
    data = np.ascontiguousarray(sim.data, dtype=">f4").tobytes()
    return header_block(cards) + data + bytes(-len(data) % BLOCK)


def test_a_50000_card_header_is_refused_by_default_and_read_when_allowed() -> None:
    raw = _many_cards(50_000)
    with pytest.raises(ImageTooLargeError, match="more than 10,000 cards"):
        read_image(raw)
    image = read_image(raw, limits=FitsLimits(max_cards=60_000))
    assert len(image.header) >= 50_000 and image.header["K0049000"] > 0
    image_metadata(image.header, image.data.shape)


def test_a_header_without_end_is_cut_at_the_card_limit() -> None:
    start = "".join(card.ljust(80) for card in image_header(10, 10)).ljust(BLOCK)
    endless = gzip_stream([(start.encode(), 1), (b" " * BLOCK, 100_000)])  # no END card
    with pytest.raises(ImageTooLargeError, match="cards"):
        read_image(endless)


def test_io_bytesio_and_paths_agree(tmp_path) -> None:
    path = tmp_path / "a.fits.bz2"
    path.write_bytes(bz2.compress(good_fits()))
    assert np.array_equal(
        read_image(path).data, read_image(io.BytesIO(good_fits()).getvalue()).data
    )
