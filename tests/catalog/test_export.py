"""Export writers: every format read back by the field's own readers (astropy, csv, json),
values round-tripped, light curves in VOTable and FITS, streaming in chunks."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pytest
from astropy.io import fits, votable

from astrid.catalog import export
from astrid.catalog.export import ExportError, ListSource, iter_export


def _entries(n: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"AstrID J1000{i:02d}.00+020000.0",
            "object_id": i + 1,
            "ra": 150.0 + i * 1e-3,
            "dec": 2.0 - i * 1e-3,
            "classification": "transient/supernova/Ia" if i % 2 else None,
            "n_detections": 3,
            "first_mjd": 60000.25,
            "last_mjd": 60010.5,
            "peak_mag": 18.25 + i,
            "latest_mag": None,
            "max_score": 0.95,
            "importance": 4 if i else None,
            "discovery_status": "confirmed",
            "annotations": {"star": {"name": "Gaia DR3 1", "sep": 2.5}, "note": "a<b & c"},
        }
        for i in range(n)
    ]


def _points(n: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"AstrID J1000{i:02d}.00+020000.0",
            "object_id": i + 1,
            "mjd": 60000.0 + k,
            "filter": "r",
            "kind": "detection" if k else "upper_limit",
            "mag": 19.0 + k * 0.1,
            "mag_err": 0.05 if k else None,
            "flux": 10.0 * k,
            "flux_err": 1.0,
            "detection_id": 100 + k if k else None,
        }
        for i in range(n)
        for k in range(3)
    ]


def _bytes(fmt: str, source: ListSource) -> bytes:
    return b"".join(iter_export(source, fmt))


def test_csv_and_json_round_trip() -> None:
    rows = _entries(5)
    text = _bytes("csv", ListSource(rows)).decode()
    read = list(csv.DictReader(io.StringIO(text)))
    assert len(read) == 5 and read[1]["classification"] == "transient/supernova/Ia"
    assert float(read[2]["ra"]) == pytest.approx(150.002, rel=1e-12)
    assert read[0]["latest_mag"] == "" and json.loads(read[0]["annotations"])["note"] == "a<b & c"
    data = json.loads(_bytes("json", ListSource(rows)))
    assert [d["object_id"] for d in data] == [1, 2, 3, 4, 5]
    assert data[3]["annotations"]["star"]["sep"] == pytest.approx(2.5)
    assert json.loads(_bytes("json", ListSource([]))) == []


def test_votable_has_catalog_and_light_curves() -> None:
    source = ListSource(_entries(4), _points(4))
    doc = votable.parse(io.BytesIO(_bytes("votable", source)))
    tables = list(doc.iter_tables())
    assert [t.name for t in tables] == ["catalog", "light_curves"]
    cat = tables[0].to_table()
    assert len(cat) == 4 and cat["ra"].unit == "deg"
    np.testing.assert_allclose(cat["dec"], [2.0, 1.999, 1.998, 1.997], rtol=1e-12)
    assert json.loads(str(cat["annotations"][0]))["note"] == "a<b & c"  # escaped, not markup
    lc = tables[1].to_table()
    assert len(lc) == 12 and list(lc["kind"][:3]) == ["upper_limit", "detection", "detection"]
    assert lc["mag_err"].mask[0] and not lc["mag_err"].mask[1]  # empty TD = null


def test_fits_tables_and_null_conventions() -> None:
    source = ListSource(_entries(7), _points(7))
    data = _bytes("fits", source)
    assert len(data) % 2880 == 0
    with fits.open(io.BytesIO(data)) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "CATALOG", "LIGHT_CURVES"]
        cat = hdul["CATALOG"].data
        assert len(cat) == 7 and cat["name"][3] == "AstrID J100003.00+020000.0"
        np.testing.assert_allclose(cat["peak_mag"], 18.25 + np.arange(7), rtol=1e-12)
        assert np.isnan(cat["latest_mag"][0]) and cat["importance"][0] == -1
        assert cat["classification"][1] == "transient/supernova/Ia"
        assert hdul["CATALOG"].header["TUNIT3"] == "deg"
        assert len(hdul["LIGHT_CURVES"].data) == 21


def test_fits_streams_in_chunks_and_checks_counts() -> None:
    chunks = list(export.iter_fits(ListSource(_entries(10)), light_curves=False, chunk_rows=3))
    assert len(chunks) > 4  # header, several row chunks, padding
    with fits.open(io.BytesIO(b"".join(chunks))) as hdul:
        assert list(hdul["CATALOG"].data["object_id"]) == list(range(1, 11))

    class Lying(ListSource):
        def n_entries(self) -> int:
            return 3

    with pytest.raises(ExportError, match="more rows than the 3 announced"):
        b"".join(export.iter_fits(Lying(_entries(10)), light_curves=False))
    with pytest.raises(ExportError, match="unknown export format 'xls'"):
        iter_export(ListSource([]), "xls")
