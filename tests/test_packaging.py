"""Packaging and layering: what a user gets from ``pip install``, and the import direction.

Oracles, per test: the layout declared in pyproject.toml (``simulate/`` -> ``marginlab.simulate``,
``models/`` -> ``marginlab.models``, ``marginlab`` from ``marginlab/``: ``__init__.py`` with
``__version__`` and ``__main__.py``, nothing else); ``__version__`` and ``--version`` equal
the distribution's version in pyproject.toml; the
layering rule of STYLE.md (``simulate`` never imports ``models``), checked statically with
``ast`` and at run time; the project's ruff configuration.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"simulate": "marginlab.simulate", "models": "marginlab.models"}

_COPY_IGNORE = shutil.ignore_patterns(
    ".git", "__pycache__", "*.egg-info", "build", "dist", ".ruff_cache", ".pytest_cache",
    ".hypothesis", "*.nbi", "*.nbc", "*.pyc", "marginlab-output",
)  # fmt: skip


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(extra)
    return env


def _shipped_files(folder: str) -> set[str]:
    """Files of a source package that its wheel must hold: every .py file and every file
    under a ``data/`` folder (package data), relative to the package folder."""
    root = REPO / folder
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and (p.suffix == ".py" or "data" in p.relative_to(root).parts[:-1])
    }


# --------------------------------------------------------------------------- (a) the wheel
@pytest.mark.slow
def test_wheel_installs_and_imports_outside_the_repo(tmp_path):
    """Oracle (pyproject layout): the wheel holds marginlab/simulate/ and marginlab/models/
    (every source .py file and package-data file), no top-level ``simulate``/``models`` and no
    ``marginlab/__init__.py``; installed into a fresh venv it imports from the venv, not the
    repository, a tiny simulation runs, and the ``marginlab`` console script works."""
    # Build from a copy so that setuptools' build/ and egg-info never land in the work tree.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_COPY_IGNORE)
    shutil.rmtree(src / "tests", ignore_errors=True)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
        capture_output=True, text=True, timeout=600, env=_clean_env(), cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("marginlab-*.whl")
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops <= {"marginlab"} | {t for t in tops if t.endswith((".dist-info", ".data"))}, tops
    assert "simulate" not in tops and "models" not in tops
    top_files = {n for n in names if n.startswith("marginlab/") and n.count("/") == 1}
    assert top_files == {"marginlab/__init__.py", "marginlab/__main__.py"}, top_files
    for folder, dotted in PACKAGES.items():
        prefix = dotted.replace(".", "/") + "/"
        in_wheel = {n[len(prefix):] for n in names if n.startswith(prefix)}
        expected = _shipped_files(folder)
        assert in_wheel == expected, (folder, "missing:", expected - in_wheel,
                                      "unexpected:", in_wheel - expected)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "marginlab = marginlab.models.app.cli:main" in zipfile.ZipFile(wheel).read(
        entry_points
    ).decode()

    venv = tmp_path / "venv"
    vpy, site_dir = _venv_seeing_this_environment(venv)
    bindir = vpy.parent
    install = subprocess.run(
        [str(vpy), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300, env=_clean_env(),
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache = tmp_path / "kernel-cache"
    probe = (
        "import marginlab.simulate as s, marginlab.models as m\n"
        "p = s.simulate_paths(m.GBM(mu=0.0, sigma=0.5), 100.0, n_steps=2, dt=1 / 365,\n"
        "                     n_paths=3, seed=1)\n"
        "assert p.shape == (3, 3, 1) and (p[:, 0, 0] == 100.0).all(), p\n"
        "import marginlab\n"
        f"assert marginlab.__version__ == {version!r}, marginlab.__version__\n"
        "print(s.__file__)\n"
        "print(m.__file__)\n"
        "print(marginlab.__file__)\n"
    )
    run = subprocess.run([str(vpy), "-c", probe], capture_output=True, text=True, timeout=600,
                         cwd=elsewhere, env=_clean_env(MARGINLAB_CACHE_DIR=str(cache)))
    assert run.returncode == 0, run.stderr
    # Compiled kernels went to the cache folder, never into the installed package.
    assert list(cache.rglob("*.nbi")), "no kernel was cached"
    installed = site_dir / "marginlab"
    assert not [p for p in installed.rglob("*") if p.suffix in (".nbi", ".nbc")]
    files = [Path(line).resolve() for line in run.stdout.split("\n") if line.strip()]
    assert len(files) == 3, run.stdout
    for f in files:
        assert f.is_relative_to(venv.resolve()), f
        assert not f.is_relative_to(REPO), f

    cli = subprocess.run([str(bindir / "marginlab"), "--help"], capture_output=True, text=True,
                         timeout=300, cwd=elsewhere, env=_clean_env())
    assert cli.returncode == 0, cli.stderr
    assert "demo" in cli.stdout
    for cmd in ([str(bindir / "marginlab"), "--version"],
                [str(vpy), "-m", "marginlab", "--version"]):
        v = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=elsewhere,
                           env=_clean_env())
        assert v.returncode == 0, v.stderr
        assert v.stdout.strip() == f"marginlab {version}", v.stdout

    # pip uninstall leaves no folder behind that could shadow a later (editable) install.
    gone = subprocess.run([str(vpy), "-m", "pip", "uninstall", "-y", "-q", "marginlab"],
                          capture_output=True, text=True, timeout=300, env=_clean_env())
    assert gone.returncode == 0, gone.stdout + gone.stderr
    left = sorted(str(p.relative_to(site_dir)) for p in installed.rglob("*")) \
        if installed.exists() else []
    assert not left, left


def _venv_seeing_this_environment(venv: Path) -> tuple[Path, Path]:
    """A fresh venv (its python, its site-packages) that also sees this interpreter's
    installed packages (numba, numpy, ...) through a ``.pth`` file, whether this interpreter
    is a system Python or itself a venv (``--system-site-packages`` would only see the base
    interpreter's packages, not those of a venv the tests run in)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=300, env=_clean_env())
    vpy = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    site_dir = Path(subprocess.run(
        [str(vpy), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True, timeout=120).stdout.strip())
    ours = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    (site_dir / "_outer_environment.pth").write_text("\n".join(ours) + "\n")
    return vpy, site_dir


# --------------------------------------------------------------------------- (b) layering
def _module_of(path: Path, root: Path, package: str) -> str:
    rel = path.relative_to(root).with_suffix("").parts
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join((package, *rel))


def forbidden_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Names of ``marginlab.models`` (or top-level ``models``) imported by ``source``.

    ``module`` is the dotted name of the file (e.g. ``marginlab.simulate.paths``); relative
    imports are resolved against it. ``importlib.import_module``/``__import__`` calls with a
    literal name are checked too.
    """

    def bad(name: str) -> bool:
        return name in ("models", "marginlab.models") or name.startswith(
            ("models.", "marginlab.models.")
        )

    base = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if bad(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                parent = ".".join(anchor + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            if bad(parent):
                found.append(parent)
            else:
                found += [f"{parent}.{a.name}" for a in node.names if bad(f"{parent}.{a.name}")]
        elif isinstance(node, ast.Call):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if fname in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and bad(
                    arg.value
                ):
                    found.append(arg.value)
    return found


@pytest.mark.parametrize(
    "source, expected_bad",
    [
        ("import models", True),
        ("import models.market", True),
        ("import marginlab.models", True),
        ("import marginlab.models.market as mm", True),
        ("from marginlab.models import GBM", True),
        ("from marginlab import models", True),
        ("from models.market import GBM", True),
        ("from ..models import market", True),
        ("from .. import models", True),
        ("from ..models.market import GBM", True),
        ("def f():\n    from marginlab.models import GBM", True),
        ("import importlib\nimportlib.import_module('marginlab.models')", True),
        ("__import__('models')", True),
        ("from .rng import BLOCK_PATHS", False),
        ("from . import paths", False),
        ("from marginlab.simulate import paths", False),
        ("import numpy as np\nimport numba", False),
        ("import modelsx\nfrom marginlab.modelsx import y", False),
        ("'''see marginlab.models for the models'''", False),
    ],
)
def test_layering_checker_detects_violations(source, expected_bad):
    """Oracle (known answers): the checker flags each way of importing models from a module
    of marginlab.simulate, and nothing else (so the layering test below can fail)."""
    assert bool(forbidden_imports(source, "marginlab.simulate.paths")) is expected_bad


def test_simulate_never_imports_models():
    """Oracle (STYLE.md layering rule): no .py file under simulate/ imports marginlab.models
    or models, absolutely or relatively (parsed with ast)."""
    root = REPO / "simulate"
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    assert files, "no sources found under simulate/"
    offenders = {}
    for path in files:
        module = _module_of(path, root, "marginlab.simulate")
        hits = forbidden_imports(path.read_text(encoding="utf-8"), module,
                                 is_package=path.name == "__init__.py")
        if hits:
            offenders[str(path.relative_to(REPO))] = hits
    assert not offenders, offenders


def test_importing_simulate_does_not_load_models(tmp_path):
    """Oracle (run-time layering): a fresh interpreter that imports marginlab.simulate (and
    every submodule of it) has no marginlab.models module loaded."""
    submodules = sorted(
        _module_of(p, REPO / "simulate", "marginlab.simulate")
        for p in (REPO / "simulate").rglob("*.py")
        if "__pycache__" not in p.parts
    )
    code = (
        "import importlib, sys\n"
        f"for name in {submodules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'models' or 'marginlab.models' in m))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=_clean_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- (c) ruff
def test_ruff_check_passes_on_the_repository():
    """Oracle (project lint config in pyproject.toml): ``ruff check .`` reports nothing."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    proc = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
