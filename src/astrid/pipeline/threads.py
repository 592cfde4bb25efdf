"""One BLAS thread per pipeline process.

A pipeline process (``astrid worker``, ``astrid process``) works on one observation at a
time and is run once per core. numpy's and scipy's OpenBLAS start a thread per core, and on
a busy machine the threads of the small matrix products in PSF fitting, flux scaling and
kernel solving wait on each other at a cost of CPU: the steady 2048² batch took about a
tenth less CPU with one thread (``benchmarks/pipeline_throughput.py``, docs/benchmarks.md),
with products identical byte for byte (``benchmarks/pipeline_identity.py``).
:func:`one_blas_thread` limits every BLAS library loaded, loading scipy's first (it brings
its own OpenBLAS, which a limit set earlier would miss). The model's torch threads are set
where it scores (:func:`astrid.model.score.intra_op_threads`). Not for the API server.
``ASTRID_PIPELINE_ONE_BLAS_THREAD=false`` turns it off.
"""

from __future__ import annotations

__all__ = ["one_blas_thread"]


def one_blas_thread() -> int:
    """Limit every BLAS library of this process to one thread, from now on; the number of
    libraries limited (0 where none is found)."""
    import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS, to be limited too)
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    return sum(1 for lib in threadpool_info() if lib.get("user_api") == "blas")
