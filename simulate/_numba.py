"""The one place where numba is imported and its options are set.

Every kernel in :mod:`marginlab.simulate` is compiled through :func:`kernel` (serial) or
:func:`parallel_kernel` (``prange`` over path blocks). Options:

* ``cache=True``: compiled machine code is stored beside the sources, so a second process
  only loads it (see ``BENCHMARKS.md`` for the first-call and cached import times). numba
  checks only the timestamp of the file that defines a cached function, not of the files
  its (inlined) callees come from: after editing ``rng.py`` or ``_vmath.py`` in a checkout,
  delete the ``*.nbi`` / ``*.nbc`` files under ``__pycache__`` (an installed wheel or a fresh
  clone starts with none).
* ``fastmath`` is off: results must be bit-identical across thread counts and machines
  of the same architecture, and ``exp``/``log`` must keep full accuracy.
* ``error_model="numpy"``: division by zero gives inf/nan instead of raising, as in numpy,
  which lets LLVM vectorise loops that contain divisions.
"""

from __future__ import annotations

import numba
from numba import njit, prange

__all__ = ["kernel", "parallel_kernel", "inline_kernel", "prange", "numba"]

_OPTIONS = {"cache": True, "fastmath": False, "error_model": "numpy", "nogil": True}

kernel = njit(**_OPTIONS)
"""Decorator for a serial kernel."""

parallel_kernel = njit(parallel=True, **_OPTIONS)
"""Decorator for a kernel that runs ``prange`` loops over independent blocks."""

inline_kernel = njit(inline="always", **_OPTIONS)
"""Decorator for tiny helpers (RNG steps) that must be inlined into their callers."""
