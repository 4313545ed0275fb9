"""A small TOML writer for the configurations marginlab writes (``init``, ``demo``,
``calibrate --output/--config``); :mod:`tomllib` reads them back.

Only what a configuration holds: tables of scalars, lists, inline tables and arrays of
tables. Floats are written with :func:`repr`, which round-trips exactly (a value written and
read back is the same ``float``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["toml_value", "toml_table", "dumps"]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else toml_value(k)


def toml_value(v: Any) -> str:
    """One value as TOML (a scalar, a list or an inline table).

    Raises
    ------
    TypeError
        For ``None`` (TOML has no null: leave the key out) and unsupported types.
    ValueError
        For NaN and infinities (the configuration schema refuses them).
    """
    if isinstance(v, np.ndarray):
        v = v.tolist()
    elif isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot write a non-finite number to a configuration, got {v!r}")
        return repr(v)
    if isinstance(v, str):
        out = v.replace("\\", "\\\\").replace('"', '\\"')
        out = "".join(c if c >= " " or c == "\t" else f"\\u{ord(c):04x}" for c in out)
        return f'"{out}"'
    if isinstance(v, Mapping):
        inner = ", ".join(f"{_key(str(k))} = {toml_value(x)}" for k, x in v.items()
                          if x is not None)
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(v, Sequence):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if v is None:
        raise TypeError("None has no TOML form; leave the key out")
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def toml_table(name: str, items: Mapping[str, Any], *, array: bool = False,
               comments: Mapping[str, str] | None = None) -> str:
    """A ``[name]`` (or ``[[name]]`` with ``array=True``) table; ``None`` values are left
    out; ``comments[key]`` is written as a ``#`` line above the key."""
    head = f"[[{name}]]" if array else f"[{name}]"
    lines = [head]
    for k, v in items.items():
        if v is None:
            continue
        c = (comments or {}).get(k)
        if c:
            lines += [f"# {line}" for line in c.split("\n")]
        lines.append(f"{_key(k)} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


def dumps(data: Mapping[str, Any], header: str = "") -> str:
    """A configuration mapping as TOML text: each section a table, ``methods`` (a list of
    tables) an array of tables; ``header`` becomes leading ``#`` comment lines."""
    parts = []
    if header:
        parts.append("".join(f"# {line}".rstrip() + "\n" for line in header.split("\n")))
    for name, section in data.items():
        if isinstance(section, Mapping):
            parts.append(toml_table(name, section))
        elif isinstance(section, Sequence) and not isinstance(section, str) and all(
                isinstance(s, Mapping) for s in section):
            parts += [toml_table(name, s, array=True) for s in section]
        else:
            raise TypeError(f"{name}: a configuration section must be a table or a list of "
                            f"tables, got {section!r}")
    return "\n".join(parts)
