"""Files of a batch run: durable atomic writes, the output-folder lock, checksummed
checkpoints and the run identity.

* Every file is written to a unique temporary name in its final folder, flushed to disk
  (``fsync``), renamed over its final name, and the folder is flushed, so a crash leaves
  either the old file or the new one, never a torn one.
* One writer per output folder: an exclusive ``flock`` on ``OUTPUT/.marginlab.lock`` is held
  for the whole run (released by the kernel if the process dies, so ``--resume`` after a
  SIGKILL is never blocked by a stale lock).
* A checkpoint block is two Parquet files and a JSON record of their SHA-256 and size,
  written last: the record marks the block done, and a block whose files do not match it
  (truncated, edited) is recomputed.
* A run's identity digests everything that determines its numbers: the configuration, the
  bytes of every input file, and the package (version and sources).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["publish", "write_atomic", "OutputLock", "RunError", "file_sha256",
           "code_digest", "run_identity", "save_block", "verified_block"]


class RunError(RuntimeError):
    """A run could not finish; the message says what to do (e.g. rerun with --resume)."""


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def publish(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` to disk, rename it to ``final`` and flush the folder."""
    _fsync_path(tmp)
    os.replace(tmp, final)
    try:
        _fsync_path(final.parent)
    except OSError:  # some file systems cannot fsync a directory
        pass


def write_atomic(final: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a unique temporary name beside ``final``, then publish it; the
    temporary file is removed if anything fails."""
    tmp = _tmp_name(final)
    try:
        write(tmp)
        publish(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def write_text_atomic(final: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``final`` through :func:`write_atomic`."""
    return write_atomic(Path(final), lambda p: p.write_text(text, encoding="utf-8"))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def code_digest() -> str:
    """SHA-256 over the sources of marginlab.simulate and marginlab.models as installed."""
    here = Path(__file__).resolve().parent
    roots = [here, here.parent / "simulate"]
    try:
        import marginlab.simulate as sim

        roots[1] = Path(sim.__file__).resolve().parent
    except ImportError:  # pragma: no cover
        pass
    h = hashlib.sha256()
    for root in roots:
        for p in sorted(root.rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _version() -> str:
    import importlib.metadata as md

    try:
        return md.version("marginlab")
    except md.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def run_identity(config_digest: str, inputs: Mapping[str, Path]) -> dict[str, Any]:
    """The identity record of a run: config digest, input file digests, package version and
    code digest, and ``id``, the SHA-256 of all of them (the checkpoint folder's name)."""
    rec: dict[str, Any] = {
        "config": config_digest,
        "inputs": {k: file_sha256(Path(p)) for k, p in sorted(inputs.items())},
        "marginlab": _version(),
        "code": code_digest(),
    }
    rec["id"] = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()
    return rec


def identity_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two identity records, in words (for the resume log)."""
    out = []
    if old.get("config") != new.get("config"):
        out.append("the configuration")
    keys = set(old.get("inputs", {})) | set(new.get("inputs", {}))
    out += [k for k in sorted(keys) if old.get("inputs", {}).get(k) != new["inputs"].get(k)]
    if old.get("marginlab") != new.get("marginlab") or old.get("code") != new.get("code"):
        out.append("the marginlab package")
    return out


class OutputLock:
    """Exclusive lock of an output folder for one run (``flock``; released at exit or when
    the process dies)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / ".marginlab.lock"
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunError(f"{self.folder}: another marginlab run ({holder}) is writing to "
                           "this output folder; wait for it to finish or use another "
                           "output folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
                 .encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# ----------------------------------------------------------------------------- checkpoints
def block_paths(folder: Path, block: int) -> dict[str, Path]:
    """The files of checkpoint block ``block``: accounts, allocations and the record."""
    stem = f"block_{block:06d}"
    return {"accounts": folder / f"{stem}.accounts.parquet",
            "allocations": folder / f"{stem}.alloc.parquet",
            "liquidation": folder / f"{stem}.liquidation.parquet",
            "record": folder / f"{stem}.json"}


def save_block(folder: Path, block: int, write: Mapping[str, Callable[[Path], Any]]) -> None:
    """Write a block's data files (``write[name](tmp_path)``), then its checksum record."""
    paths = block_paths(folder, block)
    sums = {}
    for name, fn in write.items():
        write_atomic(paths[name], fn)
        sums[name] = {"sha256": file_sha256(paths[name]), "bytes": paths[name].stat().st_size}
    text = json.dumps({"block": block, "files": sums}, indent=1)
    write_atomic(paths["record"], lambda p: p.write_text(text))


def verified_block(folder: Path, block: int,
                   names: tuple[str, ...] = ("accounts", "allocations")
                   ) -> dict[str, bytes] | None:
    """The data files of a block as bytes when its record exists, names exactly the files
    ``names`` and every checksum matches; None otherwise (missing, truncated or changed: the
    block must be recomputed)."""
    paths = block_paths(folder, block)
    try:
        rec = json.loads(paths["record"].read_text())
        out = {}
        for name, want in rec["files"].items():
            data = paths[name].read_bytes()
            if len(data) != want["bytes"] or hashlib.sha256(data).hexdigest() != want["sha256"]:
                return None
            out[name] = data
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return out if set(out) == set(names) else None


def drop_block(folder: Path, block: int) -> None:
    """Remove a block's files (record first, so a half-removed block is never 'done')."""
    paths = block_paths(folder, block)
    for name in ("record", "accounts", "allocations", "liquidation"):
        paths[name].unlink(missing_ok=True)
