"""Warnings attributed to the caller's line, not to a line of the library.

``warnings.warn(..., stacklevel=n)`` needs the depth of the call stack between the public
function and the ``warn`` call, which changes whenever a function is called through another
(``fit(model="garch")`` calls ``fit_garch``). :func:`warn` counts it instead: the warning is
reported at the innermost frame outside ``marginlab.models`` and ``marginlab.simulate``
(what ``skip_file_prefixes`` does on Python 3.12+; we support 3.11), also skipping the
``__init__`` that :mod:`dataclasses` generates for our classes.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import marginlab.simulate as _simulate

__all__ = ["warn", "SharedScenariosWarning"]

_PREFIXES = (os.path.dirname(os.path.abspath(__file__)) + os.sep,
             os.path.dirname(os.path.abspath(_simulate.__file__)) + os.sep)


class SharedScenariosWarning(UserWarning):
    """Shared scenarios replaced the market model of one or more methods without the caller
    naming them (:func:`~marginlab.models.compare.compare` with ``shared=None``)."""


def _in_library(frame: Any) -> bool:
    code = frame.f_code
    if os.path.abspath(code.co_filename).startswith(_PREFIXES):
        return True
    # the __init__ that dataclasses generate (file "<string>") of one of our classes
    if code.co_filename == "<string>" and code.co_name == "__init__":
        owner = frame.f_locals.get("self")
        return type(owner).__module__.startswith("marginlab.")
    return False


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` reported at the user's line that called into the
    library (the innermost frame outside ``marginlab.models`` / ``marginlab.simulate``)."""
    frame = sys._getframe(1)
    level = 2  # stacklevel 1 would be this function; 2 the function that called warn()
    while frame is not None and _in_library(frame):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
