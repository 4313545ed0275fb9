"""Sphinx configuration for marginlab's documentation (built by tests/test_docs.py).

API reference: autodoc + numpydoc from the docstrings. Notebooks: myst-nb, from
``../notebooks`` (``docs/notebooks`` is a symlink). Execution is chosen by the
``MARGINLAB_DOCS_EXECUTE`` environment variable: ``off`` (default: the notebooks are shown
as stored, without outputs), ``fast`` (execute 01, 02 and 05, a few seconds each; 03 and 04
are shown as stored) or ``all``. ``tests/test_notebooks.py`` executes all five.
"""

from __future__ import annotations

import os
from importlib.metadata import version as _version

project = "marginlab"
author = "marginlab contributors"
release = _version("marginlab")
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "alabaster"
html_static_path: list[str] = []

autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()

_mode = os.environ.get("MARGINLAB_DOCS_EXECUTE", "off")
if _mode not in ("off", "fast", "all"):
    raise ValueError(f"MARGINLAB_DOCS_EXECUTE: {_mode!r}; allowed: off, fast, all")
nb_execution_mode = "off" if _mode == "off" else "force"
_SLOW = ["*03_methodology_comparison*", "*04_calibration_and_backtests*"]
nb_execution_excludepatterns = _SLOW if _mode == "fast" else []
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
suppress_warnings = ["mystnb.unknown_mime_type"]
