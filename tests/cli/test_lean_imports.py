"""``astrid detect`` / ``astrid subtract`` import scipy and astropy without the work that
:mod:`astrid.cli.lean` skips (scipy's docstring rewrite and clone of numpy's lazy submodules,
astropy's numcodecs import), with the same results, and leave the hooks as they were."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run(code: str) -> list[str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    return out.stdout.strip().splitlines()


def test_lean_imports_skip_docstring_rewrite_and_numcodecs_then_restore() -> None:
    code = (
        "import sys\nfrom astrid.cli.lean import lean_imports\n"
        "with lean_imports():\n    import scipy.ndimage, scipy.fft, astropy.io.fits\n"
        "import scipy._lib._array_api as aa\n"
        "print(aa.xp_capabilities.__name__ == 'xp_capabilities')\n"
        "print('numcodecs' in sys.modules)\n"
        "print('Array API Standard Support' in (scipy.ndimage.gaussian_filter.__doc__ or ''))\n"
        "import numcodecs\nprint(numcodecs.__name__)\n"  # importable afterwards
        "from astropy.io.fits.hdu.compressed._codecs import Gzip1\n"
        "print(Gzip1.__mro__[1].__module__)\n"
        "import numpy\nprint('numpy.f2py' in sys.modules, 'f2py' in numpy.__all__)\n"
        # scipy's numpy namespace still has numpy.testing (imported at first use)
        "from scipy._lib.array_api_compat import numpy as xnp\n"
        "print(xnp.testing is numpy.testing, 'numpy.testing' in sys.modules)\n"
    )
    restored, numcodecs_loaded, table_in_doc, after, codec_base, f2py, testing = _run(code)
    assert f2py == "False True"  # not imported; numpy's own __all__ restored
    assert testing == "True True"
    assert restored == "True"
    assert numcodecs_loaded == "False"
    assert table_in_doc == "False"  # the rewrite was skipped
    assert after == "numcodecs"
    assert codec_base.startswith("astropy.")  # astropy's own Codec base, not numcodecs'


def test_without_lean_imports_scipy_rewrites_docstrings() -> None:
    # the check above can fail: a plain import has the table and loads numcodecs
    code = (
        "import sys, scipy.ndimage, astropy.io.fits\n"
        "print('Array API Standard Support' in (scipy.ndimage.gaussian_filter.__doc__ or ''))\n"
        "print('numcodecs' in sys.modules)\n"
        "print('numpy.f2py' in sys.modules)\n"
    )
    pytest.importorskip("numcodecs")
    table_in_doc, numcodecs_loaded, f2py = _run(code)
    assert table_in_doc == "True"
    assert numcodecs_loaded == "True"
    assert f2py == "True"


def test_lean_imports_leave_imported_modules_alone() -> None:
    code = (
        "import scipy.ndimage, scipy.special, scipy.fft, astropy.io.fits\n"
        "import scipy._lib._array_api as aa\nfrom astrid.cli.lean import lean_imports\n"
        "original = aa.xp_capabilities\n"
        "with lean_imports():\n    print(aa.xp_capabilities is original)\n"
    )
    assert _run(code) == ["True"]


def test_detect_process_gives_the_same_candidates_with_lean_imports(tmp_path: Path) -> None:
    # the whole process (lean imports) against the library called after plain imports
    from astrid.science.difference import detect_pair
    from astrid.science.simulate import simulate_pair
    from astrid.science.simulate_image import write_simulated
    from astrid.science.simulate_model import AnalyticPSF, Exposure

    pair = simulate_pair((384, 384), 120, seed=3, n_transients=12,
                         new=Exposure(psf=AnalyticPSF(fwhm=3.5), mjd=60030.0,
                                      offset=(0.37, -0.62), rotation=0.1),
                         ref=Exposure(psf=AnalyticPSF(fwhm=2.5)))  # fmt: skip
    new, ref, csv = tmp_path / "new.fits", tmp_path / "ref.fits", tmp_path / "c.csv"
    write_simulated(pair.new, new)
    write_simulated(pair.ref, ref)
    lines = _run(
        "import sys\nfrom astrid.cli import main\n"
        f"sys.argv = ['astrid', 'detect', {str(new)!r}, {str(ref)!r}, '-o', {str(csv)!r}]\n"
        "main()\n"
    )
    assert lines[0].startswith("wrote ")
    from astropy.table import Table

    got = Table.read(csv, format="ascii.csv")
    want = detect_pair(new, ref)
    assert len(got) == len(want) > 0
    for col in ("x", "y", "snr", "flux", "score"):
        np.testing.assert_allclose(np.asarray(got[col], float), np.asarray(want[col], float),
                                   rtol=1e-9, atol=0)  # fmt: skip


@pytest.mark.parametrize("command", ["detect", "subtract"])
def test_science_command_help_imports_no_scipy(command: str) -> None:
    # the lean block around the command module's import leaves scipy out (--help needs none)
    code = (
        "import sys\nfrom astrid.cli import main\ntry:\n"
        f"    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', 'scipy' in sys.modules, 'numcodecs' in sys.modules)"
    )
    assert _run(code)[-1] == "LOADED False False"
