"""``astrid detect`` as its own process ends without the interpreter's teardown, yet runs the
``atexit`` handlers, flushes its output and keeps its exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from astrid.science.simulate import simulate_pair
from astrid.science.simulate_image import write_simulated
from astrid.science.simulate_model import AnalyticPSF, Exposure

SRC = str(Path(__file__).resolve().parents[2] / "src")

# the console script's entry point, with an atexit handler and an object whose finaliser
# only the interpreter's teardown runs
_SCRIPT = """
import atexit, sys
from astrid.cli import main

class Finalised:
    def __del__(self):
        sys.stdout.write("TEARDOWN\\n")

keep = Finalised()
atexit.register(lambda: sys.stdout.write("ATEXIT\\n"))
sys.argv = ["astrid", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("exit")
    new = Exposure(psf=AnalyticPSF(fwhm=3.0), mjd=60030, offset=(2.6, -1.4), rotation=0.2)
    p = simulate_pair((256, 256), 150, seed=17, new=new, n_transients=8,
                      transient_flux_range=(2000, 5000))  # fmt: skip
    write_simulated(p.new, tmp / "new.fits")
    write_simulated(p.ref, tmp / "ref.fits")
    return tmp


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run([sys.executable, "-c", _SCRIPT, *args], env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip


def test_successful_detect_skips_the_teardown_only(pair: Path) -> None:
    out = pair / "c.csv"
    done = _run("detect", str(pair / "new.fits"), str(pair / "ref.fits"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("wrote ") and lines[0].endswith(f"candidate(s) to {out}")
    assert "ATEXIT" in lines  # handlers ran, the streams were flushed
    assert "TEARDOWN" not in lines
    assert out.read_text().startswith("ra,dec,x,y,snr")


def test_failures_and_other_commands_exit_as_before(pair: Path) -> None:
    bad = pair / "not-fits.fits"
    bad.write_text("not a FITS file")
    done = _run("detect", str(bad), str(pair / "ref.fits"), "-o", str(pair / "x.csv"))
    assert done.returncode == 1
    assert done.stderr.startswith("error:")
    assert "TEARDOWN" in done.stdout.splitlines()
    done = _run("version")
    assert done.returncode == 0
    assert "TEARDOWN" in done.stdout.splitlines()
