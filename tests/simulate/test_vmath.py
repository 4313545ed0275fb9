"""The vectorised exp of the path kernels (simulate/_vmath.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marginlab.simulate._numba import kernel
from marginlab.simulate._vmath import (
    USES_FMA,
    scaled_exp1,
    scaled_exp_inplace,
    scaled_exp_inplace_const,
)


@kernel
def _vector(x, scale):
    buf = x.copy()
    scaled_exp_inplace(buf, scale)
    return buf


@kernel
def _vector_const(x, c):
    buf = x.copy()
    scaled_exp_inplace_const(buf, c)
    return buf


@kernel
def _scalar(x, scale):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = scaled_exp1(scale[i], x[i])
    return out


def _inputs():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.uniform(-1, 1, 200_000), rng.normal(0, 0.05, 200_000),
                           rng.uniform(-50, 50, 100_000), rng.uniform(-700, 700, 20_000),
                           np.array([0.0, -0.0, 1e-300, -1e-300, np.log(2), -np.log(2)])])


def test_exp_within_one_ulp_of_extended_precision():
    """Oracle: exp in x87 extended precision (64-bit mantissa), rounded to double; the
    vectorised exp is within 1 ulp everywhere and exact at 0."""
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("no extended precision long double on this platform")
    x = _inputs()
    got = _vector(x, np.ones_like(x))
    ref = np.exp(x.astype(np.longdouble)).astype(np.float64)
    ulp = np.abs(got - ref) / np.spacing(ref)
    assert ulp.max() <= 1.0
    assert got[np.flatnonzero(x == 0.0)].tolist() == [1.0, 1.0]


def test_scalar_and_vector_forms_are_bit_identical_with_scale():
    """Law: scaled_exp1 (reductions) and scaled_exp_inplace (full paths) give the same bits,
    which is what makes simulate_terminal equal simulate_paths[:, -1]. Domain: results
    that are neither subnormal nor overflow (|log result| < 700)."""
    x = _inputs()
    x = x[np.abs(x) < 680]
    scale = np.random.default_rng(1).uniform(0.01, 1e5, x.size)
    np.testing.assert_array_equal(_vector(x, scale), _scalar(x, scale))
    # the scale enters before the exact power-of-two scaling: one rounding of s * p(r)
    ref = np.exp(x.astype(np.longdouble)) * scale.astype(np.longdouble)
    rel = np.abs(_vector(x, scale) - ref.astype(np.float64)) / np.abs(ref.astype(np.float64))
    assert rel.max() < 4 * np.finfo(float).eps


def test_constant_scale_form_is_bit_identical():
    """Law: the one-scale vector form (one-asset full paths) gives the bits of the per-element
    form with that scale everywhere, and of the scalar form."""
    x = _inputs()
    x = x[np.abs(x) < 680]
    for c in (1.0, 0.37, 61_234.5):
        full = np.full_like(x, c)
        np.testing.assert_array_equal(_vector_const(x, c), _vector(x, full))
        np.testing.assert_array_equal(_vector_const(x, c), _scalar(x, full))


_OTHER_VARIANT = "MARGINLAB_TEST_OTHER_EXP_VARIANT"


@pytest.mark.skipif(not USES_FMA or os.environ.get(_OTHER_VARIANT) == "1",
                    reason="this process already compiles the plain multiply-add variant")
def test_plain_multiply_add_variant_in_a_generic_target_process(tmp_path):
    """The laws above for the variant this machine does not use: a fresh process that
    compiles for numba's portable ``generic`` CPU (no FMA) selects separate multiplies and
    adds, and this file's tests pass there too (1 ulp; vector == scalar bits)."""
    env = dict(os.environ, NUMBA_CPU_NAME="generic", NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               **{_OTHER_VARIANT: "1"})
    probe = subprocess.run(
        [sys.executable, "-c", "from marginlab.simulate._vmath import USES_FMA; print(USES_FMA)"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == "False"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__))],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "3 passed, 1 skipped" in proc.stdout
