"""The one place where numba is imported and its options are set.

Every kernel in :mod:`marginlab.simulate` is compiled through :func:`kernel` (serial) or
:func:`parallel_kernel` (``prange`` over path blocks). Options:

* ``cache=True``: compiled machine code is stored on disk, so a second process only loads
  it (see ``BENCHMARKS.md`` for the first-call and cached import times). Where it is stored
  is decided here, deliberately (see :func:`cache_dir`): never inside the installed package,
  so an installed ``site-packages`` may be read-only or shared, and ``pip uninstall`` leaves
  nothing behind (files numba wrote beside the sources are not in the wheel's RECORD, and a
  leftover ``marginlab/simulate/__pycache__`` would turn ``marginlab.simulate`` into an empty
  namespace package that shadows a later editable install).
* ``fastmath`` is off: results must be bit-identical across thread counts and machines
  of the same architecture, and ``exp``/``log`` must keep full accuracy.
* ``error_model="numpy"``: division by zero gives inf/nan instead of raising, as in numpy,
  which lets LLVM vectorise loops that contain divisions.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numba
from numba import njit, prange
from numba.core import caching, config

__all__ = ["kernel", "parallel_kernel", "inline_kernel", "prange", "numba", "cache_dir"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def _source_tag() -> str:
    """Digest of every source file of this package, its location and the numba, Python and
    platform versions. numba's own stamp covers only the file that defines a cached function,
    not the files its inlined callees come from (``rng.py``, ``_vmath.py``): keying the cache
    folder on all of them means an edit anywhere in ``simulate/`` starts a fresh cache."""
    h = hashlib.sha256()
    for name in (str(_PACKAGE_DIR), numba.__version__, sys.version, sys.platform):
        h.update(name.encode())
    for p in sorted(_PACKAGE_DIR.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:20]


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _choose_cache_dir() -> Path | None:
    tag = f"numba-{_source_tag()}"
    candidates = []
    if os.environ.get("MARGINLAB_CACHE_DIR"):
        candidates.append(Path(os.environ["MARGINLAB_CACHE_DIR"]))
    else:
        from numba.misc.appdirs import AppDirs

        candidates.append(Path(AppDirs(appname="marginlab", appauthor=False).user_cache_dir))
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        candidates.append(Path(tempfile.gettempdir()) / f"marginlab-cache-{uid}")
    for base in candidates:
        if _writable(base / tag):
            return base / tag
    return None


_CACHE_DIR = _choose_cache_dir()


def cache_dir() -> Path | None:
    """Folder of marginlab's compiled-kernel cache, or None when nothing is writable (then
    kernels are compiled in every process and nothing is written).

    Chosen once per process, in order: ``$NUMBA_CACHE_DIR`` if set (numba's own setting,
    honoured as numba does); ``$MARGINLAB_CACHE_DIR/numba-<tag>``; the user cache folder
    (``~/.cache/marginlab/numba-<tag>`` on Linux); ``$TMPDIR/marginlab-cache-<uid>/numba-<tag>``.
    ``<tag>`` digests the package's sources and location and the numba and Python versions,
    so two installs, or two versions of the sources, never share compiled code. Old tags
    are never read again and can be deleted at any time.
    """
    if config.CACHE_DIR:
        return Path(config.CACHE_DIR)
    return _CACHE_DIR


class _MarginlabCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Cache locator for marginlab's own kernels only (any other file: None, so numba's own
    locators handle the rest of the world unchanged)."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(_CACHE_DIR)

    def get_cache_path(self) -> str:
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        if config.CACHE_DIR:  # the user's numba setting wins
            return None
        try:
            ours = Path(py_file).resolve().parent == _PACKAGE_DIR
        except OSError:
            return None
        if not ours:
            return None
        if _CACHE_DIR is None:
            return _NoCacheLocator(py_func, py_file)
        return super().from_function(py_func, py_file)


class _NoCacheLocator(_MarginlabCacheLocator):
    """Nothing writable anywhere: a fresh private temporary folder per process, removed at
    exit, instead of falling through to numba's in-tree locator (site-packages)."""

    _tmp: tempfile.TemporaryDirectory | None = None

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        if _NoCacheLocator._tmp is None:
            _NoCacheLocator._tmp = tempfile.TemporaryDirectory(prefix="marginlab-numba-")
        self._cache_path = _NoCacheLocator._tmp.name

    @classmethod
    def from_function(cls, py_func, py_file):
        self = cls(py_func, py_file)
        try:
            self.ensure_cache_path()
        except OSError:
            return None
        return self


# numba >= 0.61 names the class CacheImpl, older releases _CacheImpl.
_impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
if _MarginlabCacheLocator not in _impl._locator_classes:
    _impl._locator_classes.insert(0, _MarginlabCacheLocator)

_OPTIONS = {"cache": True, "fastmath": False, "error_model": "numpy", "nogil": True}

kernel = njit(**_OPTIONS)
"""Decorator for a serial kernel."""

parallel_kernel = njit(parallel=True, **_OPTIONS)
"""Decorator for a kernel that runs ``prange`` loops over independent blocks."""

inline_kernel = njit(inline="always", **_OPTIONS)
"""Decorator for tiny helpers (RNG steps) that must be inlined into their callers."""
