"""``astrid detect`` imports only what it needs (start-up time is most of a small detect)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

# each costs 0.5-2.5 s to import and none is needed to difference a pair with ZOGY
HEAVY = ("scipy.signal", "scipy.stats", "photutils", "reproject", "matplotlib", "skimage")


@pytest.mark.parametrize("module", ["astrid.science.difference", "astrid.cli.science"])
def test_detect_path_imports_no_heavy_module(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == ""


def test_resampling_imports_neither_star_matching_nor_quality() -> None:
    # ``align_to_reference`` imports the resampling module when the grids differ: it must
    # not bring the star-matching (skimage) and image-quality (astroscrappy) modules of the
    # preprocess path with it
    unwanted = ("skimage", "astroscrappy", "astrid.science.align", "astrid.science.starmatch",
                "astrid.science.quality", "astrid.science.cosmics")  # fmt: skip
    code = (
        "import sys, astrid.science.difference, astrid.science.resample; "
        f"print(' '.join(m for m in {unwanted!r} if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == ""


# layers ``astrid detect`` / ``astrid subtract`` do not use (about 1 s of CPU to import)
OTHER_LAYERS = ("sqlalchemy", "redis", "fastapi", "torch", "astrid.store", "astrid.pipeline",
                "astrid.domain", "astrid.settings", "astrid.cli.core")  # fmt: skip


@pytest.mark.parametrize("command", ["detect", "subtract"])
def test_science_commands_import_only_their_own_module(command: str) -> None:
    code = (
        "import sys\nfrom astrid.cli import main\ntry:\n"
        f"    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', ' '.join(m for m in {OTHER_LAYERS!r} if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert f"astrid {command}" in out.stdout  # its help was printed
    assert out.stdout.strip().splitlines()[-1] == "LOADED"


def test_app_still_registers_every_command() -> None:
    # ``from astrid.cli import app`` (tests, the console script's other commands) loads every
    # command module the first time typer builds the tree
    code = (
        "import click\nfrom typer.main import get_command\nfrom astrid.cli import app\n"
        "group = get_command(app)\n"
        "print(' '.join(group.list_commands(click.Context(group))))"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    names = set(out.stdout.split())
    assert {"version", "init", "ingest", "process", "detect", "subtract", "worker", "serve",
            "backup", "catalog", "curation", "train"} <= names  # fmt: skip


def test_astrid_detect_imports_neither_scipy_spatial_nor_rich(tmp_path: Path) -> None:
    # star matching, isolation and nearest-star distances use astrid.science.neighbours
    # (scipy.spatial: ~70 ms), and the CLI's rich consoles are made only when used (~25 ms)
    from astrid.science.simulate import simulate_pair
    from astrid.science.simulate_image import write_simulated
    from astrid.science.simulate_model import AnalyticPSF, Exposure

    # enough stars for an empirical PSF (the Moffat fallback of a sparse field fits with
    # scipy.optimize, which imports scipy.spatial itself)
    pair = simulate_pair((512, 512), 200, seed=1, n_transients=25,
                         new=Exposure(psf=AnalyticPSF(fwhm=3.5), mjd=60030.0,
                                      offset=(0.37, -0.62), rotation=0.1),
                         ref=Exposure(psf=AnalyticPSF(fwhm=2.5)))  # fmt: skip
    write_simulated(pair.new, tmp_path / "new.fits")
    write_simulated(pair.ref, tmp_path / "ref.fits")
    args = ["detect", str(tmp_path / "new.fits"), str(tmp_path / "ref.fits"), "-o",
            str(tmp_path / "c.csv")]  # fmt: skip
    code = (
        "import sys\nfrom astrid.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print('LOADED', ' '.join(m for m in sys.modules\n"
        "                         if m.startswith(('scipy.spatial', 'scipy.signal', 'rich'))))\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip().splitlines()[0].startswith("wrote ")
    assert out.stdout.strip().splitlines()[-1] == "LOADED"


def test_mask_growth_around_bright_holes_does_not_import_scipy_signal() -> None:
    # the holes' predicted residual is an FFT convolution: through scipy.fft (loaded for ZOGY
    # anyway), since scipy.signal's import cost ~2.5 s of a 2-s ``astrid detect``
    code = (
        "import sys\nfrom types import SimpleNamespace\nimport numpy as np\n"
        "from astrid.science.zogy_masks import _grow_mask\n"
        "yy, xx = np.mgrid[:64, :64].astype(float)\n"
        "data = 400.0 * np.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / 8.0)\n"
        "py, px = np.mgrid[-8:9, -8:9]\n"
        "prep = SimpleNamespace(data=data, noise=1.0,\n"
        "                       psf=SimpleNamespace(array=np.exp(-(px**2 + py**2) / 8.0)))\n"
        "mask = np.zeros((64, 64), bool)\nmask[32, 32] = True\n"
        "grown = _grow_mask(mask, np.zeros_like(mask), prep, prep, 8)\n"
        "print(int(grown[20:44, 20:44].sum()), 'scipy.signal' in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    grown, signal_loaded = out.stdout.split()
    assert int(grown) > 9  # grown beyond 3x3: the residual path ran
    assert signal_loaded == "False"
