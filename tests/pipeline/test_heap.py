"""``retain_freed_memory``: a freed large array's memory stays in the process for reuse.

Run in a fresh interpreter each (the setting is process-wide): allocate and touch a 32 MiB
array (a 2048² float64 image), free it, and see how much of it is still resident.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import os, sys
import numpy as np
if sys.argv[1] == "retain":
    from astrid.pipeline.heap import retain_freed_memory
    assert retain_freed_memory() and retain_freed_memory()  # idempotent
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
a = np.ones(4 * 1024 * 1024)
del a
print(rss() - before)
"""


def _kept_bytes(mode: str) -> int:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for key in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], env=env, capture_output=True,
                         text=True, check=True, timeout=120)  # fmt: skip
    return int(out.stdout.split()[-1])


def test_freed_memory_stays_for_the_next_image() -> None:
    size = 32 * 1024 * 1024
    assert _kept_bytes("default") < size // 4  # glibc unmaps a freed 32 MiB block
    assert _kept_bytes("retain") > size * 3 // 4  # kept: the next image reuses its pages
