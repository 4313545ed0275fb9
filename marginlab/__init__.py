"""marginlab: Monte Carlo VaR / expected-shortfall margin for crypto derivatives.

The code lives in two subpackages: :mod:`marginlab.simulate` (fast numba kernels, arrays in
and out) and :mod:`marginlab.models` (market models, books, margin methods, the ``marginlab``
command). This top-level package only carries :data:`__version__` and ``python -m
marginlab``; importing it imports neither subpackage.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("marginlab")
    """The installed distribution's version (``pyproject.toml``)."""
except PackageNotFoundError:  # pragma: no cover  (a source tree that was never installed)
    __version__ = "0+unknown"

del PackageNotFoundError, version

__all__ = ["__version__"]
