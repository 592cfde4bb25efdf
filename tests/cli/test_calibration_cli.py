"""``astrid calibration add|list`` as a user runs them (a real process), on both databases:
registered frames are listed; a bad frame is one red line naming the field, exit 2, no
traceback, and nothing is stored."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from astropy.io import fits

from tests._cli import astrid


def _write(path: Path, data: np.ndarray, **cards: object) -> Path:
    hdu = fits.PrimaryHDU(np.asarray(data, np.float32))
    for k, v in cards.items():
        hdu.header[k] = v
    buf = io.BytesIO()
    hdu.writeto(buf)
    path.write_bytes(buf.getvalue())
    return path


def test_calibration_add_list_and_bad_frames(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert astrid(cli_env, "init").returncode == 0
    dark = _write(tmp_path / "dark.fits", np.full((30, 40), 60.0), EXPTIME=120.0)
    ok = astrid(
        cli_env,
        "calibration",
        "add",
        str(dark),
        "--kind",
        "dark",
        "--instrument",
        "SIMCAM",
        "--valid-from",
        "60000",
        "--valid-to",
        "2030-01-01",
        "--json",
    )
    assert ok.returncode == 0, ok.stderr
    info = json.loads(ok.stdout)
    assert info["kind"] == "dark" and info["exposure_time"] == 120.0
    assert info["valid_from"] == 60000.0 and abs(info["valid_to"] - 62502.0) < 1e-6

    zeros = np.full((30, 40), 1000.0)
    zeros[0, :5] = 0.0
    bad = [
        ("file", _write(tmp_path / "z.fits", zeros, FILTER="r"), ["--kind", "flat"]),
        ("instrument", _write(tmp_path / "i.fits", np.ones((30, 40)), INSTRUME="OTHER"),
         ["--kind", "bias"]),
    ]  # fmt: skip
    for field, path, opts in bad:
        r = astrid(cli_env, "calibration", "add", str(path), "--instrument", "SIMCAM", *opts)
        assert r.returncode == 2, (field, r.stdout, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), r.stderr
        assert "Traceback" not in r.stderr
    listed = astrid(cli_env, "calibration", "list", "--json")  # the other cases: domain tests
    assert listed.returncode == 0, listed.stderr
    assert [c["id"] for c in json.loads(listed.stdout)] == [info["id"]]


def test_calibration_add_takes_the_chip_of_a_two_chip_file(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """``--hdu SCI,2`` registers chip 2 of a two-chip master; without it, exit 2 naming
    ``hdu``; the listing shows the chip."""
    assert astrid(cli_env, "init").returncode == 0
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    for chip in (1, 2):
        hdus.append(fits.ImageHDU(np.full((30, 40), 100.0 * chip, np.float32), name="SCI",
                                  ver=chip))  # fmt: skip
    path = tmp_path / "bias_flt.fits"
    fits.HDUList(hdus).writeto(path)
    args = ("calibration", "add", str(path), "--kind", "bias", "--instrument", "SIMCAM")
    refused = astrid(cli_env, *args)
    assert refused.returncode == 2 and "hdu:" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    ok = astrid(cli_env, *args, "--hdu", "SCI,2", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["chip"] == "SCI,2"
    listed = astrid(cli_env, "calibration", "list", "--json")
    assert [c["chip"] for c in json.loads(listed.stdout)] == ["SCI,2"]


def test_calibration_add_registers_every_chip_or_keys_a_file_to_one_chip(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """``--hdu all`` registers both chips (``--json``: the list); a flat with a zero pixel
    in chip 2 is refused whole: one red line naming ``chip SCI,2``, exit 2, nothing stored.
    ``--chip N4`` keys a single-image master to N4; a bad chip name is one line naming
    ``chip``."""
    assert astrid(cli_env, "init").returncode == 0
    hdus: list[fits.PrimaryHDU | fits.ImageHDU] = [fits.PrimaryHDU()]
    hdus[0].header["FILTER"] = "r"
    for chip in (1, 2):
        hdus.append(fits.ImageHDU(np.full((30, 40), 100.0 * chip, np.float32), name="SCI",
                                  ver=chip))  # fmt: skip
    path = tmp_path / "bias_flt.fits"
    fits.HDUList(hdus).writeto(path)
    add = ("calibration", "add", "--instrument", "SIMCAM")
    ok = astrid(cli_env, *add, str(path), "--kind", "bias", "--hdu", "all", "--json")
    assert ok.returncode == 0, ok.stderr
    assert [c["chip"] for c in json.loads(ok.stdout)] == ["SCI,1", "SCI,2"]
    hdus[2].data[3, 4] = 0.0
    flat = tmp_path / "flat_flt.fits"
    fits.HDUList(hdus).writeto(flat)
    refused = astrid(cli_env, *add, str(flat), "--kind", "flat", "--hdu", "all")
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert lines[0].startswith("error: file:") and "chip SCI,2" in lines[0], refused.stderr
    assert "Traceback" not in refused.stderr
    single = _write(tmp_path / "bias_n4.fits", np.full((30, 40), 7.0))
    keyed = astrid(cli_env, *add, str(single), "--kind", "bias", "--chip", "N4", "--json")
    assert keyed.returncode == 0, keyed.stderr
    assert json.loads(keyed.stdout)["chip"] == "N4"
    bad = astrid(cli_env, *add, str(single), "--kind", "bias", "--chip", "7")
    assert bad.returncode == 2 and "error: chip:" in bad.stderr, bad.stderr
    listed = astrid(cli_env, "calibration", "list", "--json")
    assert [c["chip"] for c in json.loads(listed.stdout)] == ["N4", "SCI,2", "SCI,1"]
