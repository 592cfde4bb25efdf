"""one_blas_thread: every BLAS library of the process on one thread (scipy's included)."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from astrid.pipeline.threads import one_blas_thread


def test_every_blas_library_limited_to_one_thread() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 300))
    before = a @ a.T
    with threadpool_limits(limits=2, user_api="blas"):  # restored when the test ends
        n = one_blas_thread()
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        assert n == len(blas) >= 2  # numpy's OpenBLAS and scipy's own
        assert all(lib["num_threads"] == 1 for lib in blas)
        np.testing.assert_allclose(a @ a.T, before, rtol=1e-12, atol=1e-9)
