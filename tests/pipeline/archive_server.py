"""A loopback HTTP server that answers like SkyView and MAST, serving real FITS files.

No archive is reachable from the test machines, so the real astroquery client code is run
against this server. It answers in each archive's own format, as read from astroquery's
source:

SkyView (``astroquery.skyview.SkyViewClass``)
    ``GET /current/cgi/basicform.pl``: the HTML query form (``<select name="survey">``
    lists, default inputs); ``GET /current/cgi/runquery.pl?Position=..&survey=..``: an
    HTML results page whose ``<a href=...>FITS</a>`` links point at
    ``/tempspace/fits/<name>``, which serves the file.
MAST (``astroquery.mast.ObservationsClass``, the Portal "Mashup" API)
    ``POST /portal/Mashup/Mashup.asmx/columnsconfig``: a column-config JSON object;
    ``POST /api/v0/invoke`` with ``request=<url-encoded JSON>``: ``Mast.Caom.All`` (extjs
    histogram of ``obs_collection``), ``Mast.Caom.Cone`` and ``Mast.Caom.Products``
    (``status``/``fields``/``data``/``paging`` JSON); ``HEAD|GET
    /api/v0.1/Download/file?uri=mast:...``: the file.

The images are real files from ``../shared/data``; a field is answered with every file
whose footprint contains the requested position (SkyView) or whose centre lies in the
cone (MAST). ``fail_next[path_prefix] = n`` makes the next ``n`` requests under that path
answer HTTP 503, to exercise retries. Every request is logged in ``requests``.
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

SKYVIEW_SURVEYS = {
    "optical:DSS": ["DSS", "DSS1 Blue", "DSS1 Red", "DSS2 Red", "DSS2 Blue", "DSS2 IR"],
    "optical:SDSS": ["SDSSg", "SDSSi", "SDSSr", "SDSSu", "SDSSz"],
    "infrared:2MASS": ["2MASS-J", "2MASS-H", "2MASS-K"],
    "overlay:catalog": ["not-a-survey"],
}


@dataclass
class ServedImage:
    """A real FITS file the server can answer with."""

    path: Path
    collection: str
    ra: float
    dec: float
    wcs: WCS
    shape: tuple[int, int]
    obsid: str

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()

    def contains(self, ra: float, dec: float) -> bool:
        x, y = self.wcs.world_to_pixel(SkyCoord(ra, dec, unit="deg"))
        return bool(0 <= x < self.shape[1] and 0 <= y < self.shape[0])


def load_image(path: Path, collection: str, obsid: str) -> ServedImage:
    """Centre (the WCS position of the central pixel) and footprint of a FITS image."""
    with fits.open(path) as hdul:
        hdu = next(h for h in hdul if h.data is not None and h.data.ndim == 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(hdu.header).celestial
        shape = hdu.data.shape
    centre = wcs.pixel_to_world((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0)
    return ServedImage(
        path, collection, float(centre.ra.deg), float(centre.dec.deg), wcs, shape, obsid
    )


@dataclass
class ArchiveState:
    images: list[ServedImage]
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


FORM_HTML = """<html><body>
<form action="runquery.pl" method="get" name="form1">
<input type="text" name="Position" value="">
{selects}
<input type="radio" name="coordinates" value="J2000" checked>
<input type="radio" name="coordinates" value="B1950">
<select name="projection"><option selected value="Tan">Gnomonic</option></select>
<input type="text" name="pixels" value="300">
<input type="checkbox" name="float" checked>
<input type="submit" value="Submit">
<input type="reset" value="Reset">
</form></body></html>"""


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


class Handler(BaseHTTPRequestHandler):
    server: ArchiveServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing --------------------------------------------------------------------------

    def _send(self, body: bytes, ctype: str, code: int = 200, head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _failing(self, path: str) -> bool:
        state = self.server.state
        with state.lock:
            for prefix, n in state.fail_next.items():
                if path.startswith(prefix) and n > 0:
                    state.fail_next[prefix] = n - 1
                    return True
        return False

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = b""
        if method == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        entry: dict[str, Any] = {"method": method, "path": url.path, "query": query}
        if body:
            entry["body"] = unquote(body.decode())
        with self.server.state.lock:
            self.server.state.requests.append(entry)
        if self._failing(url.path):
            self._send(b"service unavailable", "text/plain", 503, head=method == "HEAD")
            return
        head = method == "HEAD"
        if url.path == "/current/cgi/basicform.pl":
            self._send(self._form(), "text/html")
        elif url.path == "/current/cgi/runquery.pl":
            self._send(self._skyview_results(query), "text/html")
        elif url.path.startswith("/tempspace/fits/"):
            self._serve_file(url.path.rsplit("/", 1)[-1], head)
        elif url.path == "/portal/Mashup/Mashup.asmx/columnsconfig":
            self._send(_json({"obsid": {"text": "Product Group ID"}}), "application/json")
        elif url.path == "/api/v0/invoke":
            request = json.loads(unquote(body.decode()).split("=", 1)[1])
            entry["mashup"] = request
            self._send(_json(self._mashup(request)), "application/json")
        elif url.path == "/api/v0.1/Download/file":
            self._serve_file(query["uri"].rsplit("/", 1)[-1], head)
        else:
            self._send(b"not found", "text/plain", 404, head)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    # -- SkyView -------------------------------------------------------------------------

    def _form(self) -> bytes:
        selects = "\n".join(
            f'<select name="survey" id="{sid}">'
            + "".join(f"<option>{name}</option>" for name in names)
            + "</select>"
            for sid, names in SKYVIEW_SURVEYS.items()
        )
        return FORM_HTML.format(selects=selects).encode()

    def _skyview_results(self, query: dict[str, str]) -> bytes:
        ra_text, dec_text = query["Position"].split()
        pos = SkyCoord(float(ra_text), float(dec_text), unit="deg", frame="fk5").icrs
        hits = [im for im in self.server.state.images if im.contains(pos.ra.deg, pos.dec.deg)]
        if not hits:
            return b"<html><body><p>No data found for this position.</p></body></html>"
        links = "".join(
            f"<tr><td>{query['survey']}</td>"
            f'<td><a href="../../tempspace/fits/{im.path.name}">FITS</a></td>'
            f'<td><a href="../../tempspace/jpg/{im.path.stem}.jpg">JPEG</a></td></tr>'
            for im in hits
        )
        return f"<html><body><table>{links}</table></body></html>".encode()

    def _serve_file(self, name: str, head: bool) -> None:
        for im in self.server.state.images:
            if im.path.name == name:
                self._send(im.data, "application/fits", head=head)
                return
        self._send(b"no such file", "text/plain", 404, head)

    # -- MAST ----------------------------------------------------------------------------

    def _mashup(self, request: dict[str, Any]) -> dict[str, Any]:
        service = request["service"]
        params = request.get("params", {})
        images = self.server.state.images
        if service == "Mast.Caom.All":
            hist: dict[str, Any] = {im.collection: 1 for im in images}
            hist["hist"] = []
            columns = [{"text": "obs_collection", "ExtendedProperties": {"histObj": hist}}]
            return {"status": "COMPLETE", "data": {"Tables": [{"Columns": columns}]}}
        if service == "Mast.Caom.Cone":
            centre = SkyCoord(params["ra"], params["dec"], unit="deg")
            rows = []
            for im in images:
                sep = centre.separation(SkyCoord(im.ra, im.dec, unit="deg")).deg
                if sep <= float(params["radius"]):
                    rows.append(
                        {
                            "obs_collection": im.collection,
                            "dataproduct_type": "image",
                            "obs_id": im.path.stem,
                            "obsid": im.obsid,
                            "target_name": "FIELD",
                            "s_ra": im.ra,
                            "s_dec": im.dec,
                            "calib_level": 3,
                        }
                    )
            fields = [
                {"name": "obs_collection", "type": "string"},
                {"name": "dataproduct_type", "type": "string"},
                {"name": "obs_id", "type": "string"},
                {"name": "obsid", "type": "string"},
                {"name": "target_name", "type": "string"},
                {"name": "s_ra", "type": "float"},
                {"name": "s_dec", "type": "float"},
                {"name": "calib_level", "type": "int"},
            ]
            return _table(fields, rows)
        if service == "Mast.Caom.Products":
            wanted = set(str(params["obsid"]).split(","))
            rows = []
            for im in images:
                if im.obsid not in wanted:
                    continue
                for ptype, suffix in (("SCIENCE", ".fits"), ("PREVIEW", ".jpg")):
                    fname = im.path.name if suffix == ".fits" else im.path.stem + ".jpg"
                    rows.append(
                        {
                            "obsID": im.obsid,
                            "obs_collection": im.collection,
                            "obs_id": im.path.stem,
                            "productType": ptype,
                            "productFilename": fname,
                            "dataURI": f"mast:{im.collection}/product/{fname}",
                            "productGroupDescription": "Minimum Recommended Products",
                            "size": im.path.stat().st_size,
                        }
                    )
            fields = [
                {"name": "obsID", "type": "string"},
                {"name": "obs_collection", "type": "string"},
                {"name": "obs_id", "type": "string"},
                {"name": "productType", "type": "string"},
                {"name": "productFilename", "type": "string"},
                {"name": "dataURI", "type": "string"},
                {"name": "productGroupDescription", "type": "string"},
                {"name": "size", "type": "int"},
            ]
            return _table(fields, rows)
        return {"status": "ERROR", "msg": f"unknown service {service}"}


def _table(fields: list[dict[str, str]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "status": "COMPLETE",
        "fields": fields,
        "data": rows,
        "paging": {
            "page": 1,
            "pageSize": max(len(rows), 1),
            "pagesFiltered": 1,
            "rows": len(rows),
            "rowsFiltered": len(rows),
            "rowsTotal": len(rows),
        },
    }


class ArchiveServer(ThreadingHTTPServer):
    """The server; ``url`` is its root, ``state`` its files, log and failure plan."""

    daemon_threads = True

    def __init__(self, images: list[ServedImage]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = ArchiveState(images)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> ArchiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def requests_to(self, path: str) -> list[dict[str, Any]]:
        with self.state.lock:
            return [r for r in self.state.requests if r["path"] == path]


def centre_of(path: Path) -> tuple[float, float]:
    """RA, Dec (degrees) of an image's central pixel, computed independently of AstrID."""
    im = load_image(path, "x", "0")
    return im.ra, im.dec


__all__ = ["ArchiveServer", "ServedImage", "centre_of", "load_image"]
