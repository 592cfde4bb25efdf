"""Streamed catalog exports: CSV, VOTable, FITS binary table and JSON.

Every writer is a generator of ``bytes`` chunks over an :class:`ExportSource` (rows as
dicts, re-iterable), so an API ``StreamingResponse`` or a file gets the catalog without it
ever being in memory: a million rows cost one chunk of :data:`CHUNK_ROWS` at a time.

* CSV and JSON (a streamed array): the entries, with classification and the annotations
  (JSON-encoded in CSV).
* VOTable (astropy writes the header and the FIELD definitions; rows are streamed as
  TABLEDATA) and FITS (astropy builds the BINTABLE headers; rows are packed with numpy in
  chunks): the entries plus a second table ``light_curves`` of every light-curve point.
  FITS needs its row counts up front (``NAXIS2``): the source gives them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from xml.sax.saxutils import escape

import numpy as np
from astropy.io import fits
from astropy.io.votable.tree import Field, Resource, TableElement, VOTableFile

from astrid.errors import AstridError

__all__ = [
    "CHUNK_ROWS",
    "ENTRY_COLUMNS",
    "FORMATS",
    "POINT_COLUMNS",
    "Column",
    "ExportError",
    "ExportSource",
    "ListSource",
    "iter_csv",
    "iter_export",
    "iter_fits",
    "iter_json",
    "iter_votable",
    "media_type",
]

CHUNK_ROWS = 10_000
FORMATS = ("csv", "votable", "fits", "json")


class ExportError(AstridError):
    """An export cannot be written (unknown format, rows disagreeing with their count)."""


@dataclass(frozen=True)
class Column:
    """One exported column: ``kind`` is ``f8``, ``i4`` or ``str`` (``width`` bytes in FITS)."""

    name: str
    kind: str
    unit: str | None = None
    ucd: str | None = None
    description: str = ""
    width: int = 0


ENTRY_COLUMNS: tuple[Column, ...] = (
    Column("name", "str", None, "meta.id;meta.main", "AstrID designation", 32),
    Column("object_id", "i4", None, "meta.id", "AstrID object id"),
    Column("ra", "f8", "deg", "pos.eq.ra;meta.main", "Right ascension (ICRS)"),
    Column("dec", "f8", "deg", "pos.eq.dec;meta.main", "Declination (ICRS)"),
    Column("classification", "str", None, "src.class", "Taxonomy path", 128),
    Column("n_detections", "i4", None, "meta.number", "Detections of the object"),
    Column("first_mjd", "f8", "d", "time.start", "First detection (MJD)"),
    Column("last_mjd", "f8", "d", "time.end", "Last detection (MJD)"),
    Column("peak_mag", "f8", "mag", "phot.mag;stat.max", "Brightest magnitude"),
    Column("latest_mag", "f8", "mag", "phot.mag", "Magnitude at last_mjd"),
    Column("max_score", "f8", None, "stat.probability", "Highest model P(real)"),
    Column("importance", "i4", None, "meta.code", "Expert importance 1-5 (-1 unrated)"),
    Column("discovery_status", "str", None, "meta.code.status", "Discovery status", 24),
    Column("annotations", "str", None, "meta.note", "Cross-matches (JSON)", 512),
)

POINT_COLUMNS: tuple[Column, ...] = (
    Column("name", "str", None, "meta.id", "AstrID designation", 32),
    Column("object_id", "i4", None, "meta.id", "AstrID object id"),
    Column("mjd", "f8", "d", "time.epoch", "Epoch (MJD)"),
    Column("filter", "str", None, "instr.filter", "Band", 16),
    Column("kind", "str", None, "meta.code", "detection | forced | upper_limit", 16),
    Column("mag", "f8", "mag", "phot.mag", "Magnitude (or limit)"),
    Column("mag_err", "f8", "mag", "stat.error;phot.mag", "Magnitude error"),
    Column("flux", "f8", None, "phot.flux", "Difference flux"),
    Column("flux_err", "f8", None, "stat.error;phot.flux", "Flux error"),
    Column("detection_id", "i4", None, "meta.id", "Detection id (-1: forced)"),
)


class ExportSource(Protocol):
    """Rows to export; each method may be called more than once (FITS counts first)."""

    def entries(self) -> Iterator[dict[str, Any]]: ...

    def n_entries(self) -> int: ...

    def points(self) -> Iterator[dict[str, Any]]: ...

    def n_points(self) -> int: ...


class ListSource:
    """An :class:`ExportSource` over in-memory lists (tests, small exports)."""

    def __init__(
        self, entries: Sequence[dict[str, Any]], points: Sequence[dict[str, Any]] = ()
    ) -> None:
        self._entries = entries
        self._points = points

    def entries(self) -> Iterator[dict[str, Any]]:
        return iter(self._entries)

    def n_entries(self) -> int:
        return len(self._entries)

    def points(self) -> Iterator[dict[str, Any]]:
        return iter(self._points)

    def n_points(self) -> int:
        return len(self._points)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _chunks(rows: Iterable[dict[str, Any]], n: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _csv_cell(kind: str) -> Callable[[Any], Any]:
    # One converter per column, chosen once: the row loop does no type dispatch.
    if kind in ("f8", "i4"):
        return lambda v: "" if v is None else v
    return _text


def iter_csv(source: ExportSource, columns: Sequence[Column] = ENTRY_COLUMNS) -> Iterator[bytes]:
    """The entries as CSV (header line, ``,`` separated, RFC 4180 quoting, UTF-8)."""
    native = getattr(source, "native_csv", None) if columns is ENTRY_COLUMNS else None
    chunks = native() if callable(native) else None
    if chunks is not None:  # the database writes the CSV itself (PostgreSQL COPY)
        yield from chunks
        return
    names = [c.name for c in columns]
    cells = [(c.name, _csv_cell(c.kind)) for c in columns]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for chunk in _chunks(source.entries()):
        writer.writerows([[f(row.get(n)) for n, f in cells] for row in chunk])
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def iter_json(source: ExportSource, columns: Sequence[Column] = ENTRY_COLUMNS) -> Iterator[bytes]:
    """The entries as one JSON array of objects (annotations as nested objects)."""
    names = [c.name for c in columns]
    first = True
    yield b"["
    for chunk in _chunks(source.entries()):
        parts = []
        for row in chunk:
            item = {n: _json_value(row.get(n)) for n in names}
            parts.append(("\n" if first else ",\n") + json.dumps(item, separators=(",", ":")))
            first = False
        yield "".join(parts).encode()
    yield b"\n]\n"


_VOT_TYPES = {"f8": "double", "i4": "int", "str": "char"}


def _vot_fields(vot: VOTableFile, columns: Sequence[Column]) -> list[Field]:
    fields = []
    for c in columns:
        kwargs: dict[str, Any] = {"name": c.name, "datatype": _VOT_TYPES[c.kind]}
        if c.kind == "str":
            kwargs["arraysize"] = "*"
        if c.unit:
            kwargs["unit"] = c.unit
        if c.ucd:
            kwargs["ucd"] = c.ucd
        field = Field(vot, **kwargs)
        field.description = c.description
        fields.append(field)
    return fields


def _vot_cell(column: Column, value: Any) -> str:
    if value is None:
        return "<TD/>"
    if column.kind == "f8":
        v = float(value)
        return f"<TD>{v!r}</TD>" if math.isfinite(v) else "<TD>NaN</TD>"
    if column.kind == "i4":
        return f"<TD>{int(value)}</TD>"
    return f"<TD>{escape(_text(value))}</TD>"


def _vot_rows(rows: Iterable[dict[str, Any]], columns: Sequence[Column]) -> Iterator[bytes]:
    for chunk in _chunks(rows):
        yield "".join(
            "<TR>" + "".join(_vot_cell(c, row.get(c.name)) for c in columns) + "</TR>\n"
            for row in chunk
        ).encode()


def iter_votable(source: ExportSource, *, light_curves: bool = True) -> Iterator[bytes]:
    """A VOTable 1.4: table ``catalog`` (entries) and, optionally, ``light_curves``."""
    vot = VOTableFile()
    resource = Resource()
    vot.resources.append(resource)
    tables = [("catalog", ENTRY_COLUMNS, source.entries)]
    if light_curves:
        tables.append(("light_curves", POINT_COLUMNS, source.points))
    for name, columns, _ in tables:
        table = TableElement(vot, name=name)
        table.fields.extend(_vot_fields(vot, columns))
        resource.tables.append(table)
    buf = io.BytesIO()
    vot.to_xml(buf)
    xml = buf.getvalue().decode()
    # astropy writes each (empty) table's header; the rows go in between, streamed.
    pieces = xml.split("</TABLE>")
    if len(pieces) != len(tables) + 1:
        raise ExportError("unexpected VOTable layout from astropy")
    for (_, columns, rows), head in zip(tables, pieces[:-1], strict=True):
        yield head.encode()
        yield b"<DATA><TABLEDATA>\n"
        yield from _vot_rows(rows(), columns)
        yield b"</TABLEDATA></DATA>\n</TABLE>"
    yield pieces[-1].encode()


_FITS_FORMATS = {"f8": "D", "i4": "J"}


def _fits_dtype(columns: Sequence[Column]) -> np.dtype[Any]:
    return np.dtype(
        [(c.name, {"f8": ">f8", "i4": ">i4"}.get(c.kind, f"S{c.width}")) for c in columns]
    )


def _fits_header(name: str, columns: Sequence[Column], n_rows: int) -> bytes:
    cols = [
        fits.Column(
            name=c.name,
            format=_FITS_FORMATS.get(c.kind, f"{c.width}A"),
            unit=c.unit,
            null=-1 if c.kind == "i4" else None,
        )
        for c in columns
    ]
    hdu = fits.BinTableHDU.from_columns(cols, nrows=0, name=name.upper())
    hdu.header["NAXIS2"] = n_rows
    for i, c in enumerate(columns, start=1):
        if c.ucd:
            hdu.header[f"TUCD{i}"] = c.ucd
        hdu.header[f"TTYPE{i}"] = (c.name, c.description[:45])
    return hdu.header.tostring().encode("ascii")


def _fits_pack(chunk: list[dict[str, Any]], columns: Sequence[Column], dtype: Any) -> bytes:
    arr = np.zeros(len(chunk), dtype=dtype)
    for c in columns:
        values = [row.get(c.name) for row in chunk]
        if c.kind == "f8":
            arr[c.name] = [np.nan if v is None else float(v) for v in values]
        elif c.kind == "i4":
            arr[c.name] = [-1 if v is None else int(v) for v in values]
        else:
            arr[c.name] = [_text(v).encode()[: c.width] for v in values]
    return arr.tobytes()


def _fits_table(
    name: str,
    columns: Sequence[Column],
    rows: Callable[[], Iterator[dict[str, Any]]],
    n: int,
    chunk_rows: int,
) -> Iterator[bytes]:
    yield _fits_header(name, columns, n)
    dtype = _fits_dtype(columns)
    written = 0
    for chunk in _chunks(rows(), chunk_rows):
        written += len(chunk)
        if written > n:
            raise ExportError(f"FITS table {name}: more rows than the {n} announced")
        yield _fits_pack(chunk, columns, dtype)
    if written != n:
        raise ExportError(f"FITS table {name}: {written} rows written, {n} announced")
    size = n * dtype.itemsize
    yield b"\0" * (-size % 2880)  # FITS data units fill whole 2880-byte blocks


def iter_fits(
    source: ExportSource, *, light_curves: bool = True, chunk_rows: int = CHUNK_ROWS
) -> Iterator[bytes]:
    """A FITS file: empty primary HDU, BINTABLE ``CATALOG`` and optionally ``LIGHT_CURVES``.

    Missing floats are NaN, missing integers -1 (``TNULL``), strings are blank-padded and
    cut at the column width (annotations: 512 bytes; CSV/JSON carry them whole). Rows are
    packed ``chunk_rows`` at a time (one chunk in memory).
    """
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = "AstrID"
    primary.header["EXTEND"] = True
    yield primary.header.tostring().encode("ascii")
    yield from _fits_table("catalog", ENTRY_COLUMNS, source.entries, source.n_entries(), chunk_rows)
    if light_curves:
        yield from _fits_table(
            "light_curves", POINT_COLUMNS, source.points, source.n_points(), chunk_rows
        )


def iter_export(source: ExportSource, fmt: str) -> Iterator[bytes]:
    """Chunks of ``source`` in format ``fmt`` (``csv``, ``votable``, ``fits`` or ``json``)."""
    writers: dict[str, Callable[[ExportSource], Iterator[bytes]]] = {
        "csv": iter_csv,
        "json": iter_json,
        "votable": iter_votable,
        "fits": iter_fits,
    }
    if fmt not in writers:
        raise ExportError(f"unknown export format {fmt!r} (choose one of {', '.join(FORMATS)})")
    return writers[fmt](source)


def media_type(fmt: str) -> str:
    """The HTTP media type of an export format."""
    return {
        "csv": "text/csv; charset=utf-8",
        "json": "application/json",
        "votable": "application/x-votable+xml",
        "fits": "application/fits",
    }[fmt]
