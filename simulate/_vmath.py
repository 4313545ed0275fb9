"""A vectorisable ``exp`` for the price pass of the path kernels.

glibc's scalar ``exp`` costs ~3 ns here and does not vectorise (numba's llvmlite has no
SVML), which made ``exp`` dearer than drawing the normal variate itself. This version uses
Cody-Waite range reduction ``x = k ln2 + r`` (|r| <= ln2/2, ``k`` rounded with the 1.5 * 2**52
shifter trick), a degree-13 Taylor polynomial in ``r`` evaluated as ``1 + (r + r^2 q(r))``, and
scales by ``2**k`` by adding ``k << 52`` to the exponent bits (the bits of the shifted value
hold ``k``). The loop body is straight-line arithmetic, so LLVM vectorises it, and the scalar
form :func:`scaled_exp1` gives the same bits as the vector form :func:`scaled_exp_inplace`.

Multiply-adds: where the compilation target has fused multiply-add instructions (x86 FMA3,
all AArch64) the polynomial and the reduction use them (``llvm.fma``, one rounding each;
about twice as fast, ~0.4 ns per element against ~0.75 ns on an AVX-512 machine); elsewhere
they are a multiply and an add (``fastmath`` stays off, so LLVM fuses nothing by itself).
Both are within 1 ulp; their last bits may differ, so results are bit-identical across
thread counts and across machines with the same instruction set, not across the two
families. :data:`USES_FMA` tells which one this process compiled.

Accuracy: at most 1 ulp from the correctly rounded value (checked against extended precision
in the tests); inputs are clamped to [-700, 700], far beyond any log price ratio. The scaled
forms assume ``scale * exp(x)`` is a normal double (no overflow or subnormal result).
"""

from __future__ import annotations

import math
import platform

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._numba import inline_kernel

__all__ = ["USES_FMA", "scaled_exp1", "scaled_exp_inplace", "scaled_exp_inplace_const"]

_LOG2E = 1.4426950408889634
_SHIFTER = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer in the low bits
_SHIFTER_BITS = np.int64(0x4338000000000000)  # its bit pattern: bits(t) - this == k
_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split of ln 2: k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (
    1.0 / math.factorial(k) for k in range(2, 14)
)
_X_MAX = 700.0


def _target_has_fma() -> bool:
    """Whether numba compiles for a CPU with fused multiply-add instructions."""
    if numba.config.CPU_NAME or numba.config.CPU_FEATURES:
        # A chosen (e.g. portable "generic") target: FMA only if its features name it.
        return "+fma" in (numba.config.CPU_FEATURES or "").split(",")
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    return bool(llvm_binding.get_host_cpu_features().get("fma", False))


USES_FMA: bool = _target_has_fma()
"""True when the kernels' exp uses fused multiply-adds (see the module docstring)."""


@intrinsic
def _f64_bits(typingctx, x):
    """The bits of a float64 as an int64 (a free bit cast, vectorisable)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, i):
    """The float64 with the bits of an int64."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (``llvm.fma.f64``)."""

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)

    return types.float64(types.float64, types.float64, types.float64), codegen


if USES_FMA:

    @inline_kernel
    def _mul_add(a, b, c):
        return _fma(a, b, c)

else:

    @inline_kernel
    def _mul_add(a, b, c):
        return a * b + c


@inline_kernel
def _exp_parts(x):
    # x = k ln2 + r: returns the bits of 2**k's exponent field offset (k << 52) and p(r).
    x = min(max(x, -_X_MAX), _X_MAX)
    t = _mul_add(x, _LOG2E, _SHIFTER)
    kf = t - _SHIFTER
    r = _mul_add(kf, -_LN2_LO, _mul_add(kf, -_LN2_HI, x))
    q = _C13
    q = _mul_add(r, q, _C12)
    q = _mul_add(r, q, _C11)
    q = _mul_add(r, q, _C10)
    q = _mul_add(r, q, _C9)
    q = _mul_add(r, q, _C8)
    q = _mul_add(r, q, _C7)
    q = _mul_add(r, q, _C6)
    q = _mul_add(r, q, _C5)
    q = _mul_add(r, q, _C4)
    q = _mul_add(r, q, _C3)
    q = _mul_add(r, q, _C2)
    p = 1.0 + _mul_add(r * r, q, r)
    return (_f64_bits(t) - _SHIFTER_BITS) << 52, p


@inline_kernel
def scaled_exp1(c, x):
    """Scalar ``c * exp(x)`` for ``c > 0``, bit-identical to :func:`scaled_exp_inplace`.

    The scale multiplies the polynomial before the exact power-of-two scaling, so the result
    is the correctly rounded product ``c * p(r)`` times ``2**k``."""
    kbits, p = _exp_parts(x)
    return _bits_f64(_f64_bits(c * p) + kbits)


@inline_kernel
def scaled_exp_inplace(buf, scale):
    """``buf[:] = scale * exp(buf)`` for contiguous 1-D ``buf`` and ``scale`` of its size."""
    for i in range(buf.shape[0]):
        kbits, p = _exp_parts(buf[i])
        buf[i] = _bits_f64(_f64_bits(scale[i] * p) + kbits)


@inline_kernel
def scaled_exp_inplace_const(buf, c):
    """``buf[:] = c * exp(buf)`` for contiguous 1-D ``buf`` and one scale ``c > 0``; the same
    bits as :func:`scaled_exp_inplace` with ``scale`` filled with ``c``, one load fewer."""
    for i in range(buf.shape[0]):
        kbits, p = _exp_parts(buf[i])
        buf[i] = _bits_f64(_f64_bits(c * p) + kbits)
