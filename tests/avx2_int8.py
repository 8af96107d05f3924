"""ONNX Runtime's u8 x s8 matrix products as an AVX2 CPU without VNNI computes them, in NumPy.

ONNX Runtime has no switch that makes an AVX-512/VNNI machine run its AVX2 kernels, so the
tests reason from the documented kernel instead. MLAS's AVX2 u8s8 GEMM (no VNNI) multiplies
with ``vpmaddubsw``: each pair of neighbouring products ``a[2j]*b[2j] + a[2j+1]*b[2j+1]`` of
unsigned 8-bit activations and signed 8-bit weights is summed into a *saturating signed
16-bit* integer, then widened to 32 bits (``vpmaddwd`` with ones) and accumulated. Zero
points are subtracted afterwards from row and column sums, so the raw ``u8`` values (0..255)
meet the raw weights. With full 8-bit weights a pair can reach 2*255*127 = 64,770 and
saturates; with 7-bit weights (``reduce_range``, |w| <= 64) it cannot (2*255*64 = 32,640).
VNNI (``vpdpbusd``) accumulates in 32 bits and never saturates. ONNX Runtime's own
``quantize_dynamic`` documents ``reduce_range`` for exactly this ("may improve the accuracy
for some models running on non-VNNI machine").

:func:`run_model` runs a quantised ONNX model in onnx's reference evaluator with
``MatMulInteger`` computed either way (``saturate=True``: AVX2; ``False``: VNNI / exact).
"""

from __future__ import annotations

import numpy as np
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun


def matmul_integer(a: np.ndarray, b: np.ndarray, a_zero: np.ndarray | int = 0, b_zero: np.ndarray | int = 0, *, saturate: bool) -> np.ndarray:
    """``(a - a_zero) @ (b - b_zero)`` in int32 for ``a`` u8 ``(..., K)`` and ``b`` s8 ``(K, N)``,
    with AVX2's 16-bit saturation of neighbouring product pairs when ``saturate``."""
    lead = a.shape[:-1]
    a2 = a.reshape(-1, a.shape[-1]).astype(np.int32)
    b2 = b.astype(np.int32)
    k = a2.shape[1]
    if k % 2:  # the kernel pads K to an even length with zeros
        a2 = np.pad(a2, ((0, 0), (0, 1)))
        b2 = np.pad(b2, ((0, 1), (0, 0)))
    if saturate:
        out = np.zeros((a2.shape[0], b2.shape[1]), dtype=np.int64)
        ae, ao = a2[:, 0::2], a2[:, 1::2]
        be, bo = b2[0::2], b2[1::2]
        for j in range(ae.shape[1]):  # one pair of K at a time keeps memory at M x N
            pair = np.outer(ae[:, j], be[j]) + np.outer(ao[:, j], bo[j])
            out += np.clip(pair, -32768, 32767)
    else:
        out = a2.astype(np.int64) @ b2.astype(np.int64)
    # Zero-point corrections, exact in both kernels (computed from row/column sums).
    az = np.asarray(a_zero, dtype=np.int64)
    bz = np.asarray(b_zero, dtype=np.int64).reshape(1, -1) if np.ndim(b_zero) else np.asarray(b_zero, dtype=np.int64)
    out = out - az * b2.sum(0, dtype=np.int64)[None, :] - a2.sum(1, dtype=np.int64)[:, None] * bz + k * az * bz
    return out.astype(np.int32).reshape(*lead, -1)


def _op(saturate: bool) -> type[OpRun]:
    class MatMulInteger(OpRun):
        op_domain = ""

        def _run(self, a, b, a_zero_point=None, b_zero_point=None):  # noqa: ANN001, ANN202
            az = 0 if a_zero_point is None else a_zero_point
            bz = 0 if b_zero_point is None else b_zero_point
            # Only u8 x s8 goes through vpmaddubsw; u8 x u8 is widened to 16 bits first.
            return (matmul_integer(a, b, az, bz, saturate=saturate and b.dtype == np.int8),)

    return MatMulInteger


class DequantizeLinear(OpRun):
    """Opset-17 DequantizeLinear (onnx's reference evaluator implements only opset >= 19)."""

    op_domain = ""

    def _run(self, x, x_scale, x_zero_point=None, axis=None, block_size=None, output_dtype=None):  # noqa: ANN001, ANN202, ARG002
        axis = 1 if axis is None else axis
        scale, zero = np.asarray(x_scale), np.asarray(0 if x_zero_point is None else x_zero_point)
        if scale.ndim == 1 and x.ndim > 1:  # per-axis
            shape = [1] * x.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape) if zero.ndim else zero
        return (((x.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32),)


def run_model(model_path: str, feeds: dict[str, np.ndarray], *, saturate: bool) -> list[np.ndarray]:
    """Outputs of the ONNX model at ``model_path`` with ``MatMulInteger`` as AVX2 (``saturate``)
    or VNNI computes it; every other operator as onnx's reference implementation does."""
    session = ReferenceEvaluator(model_path, new_ops=[_op(saturate), DequantizeLinear])
    return session.run(None, feeds)


def max_pair_sum(model_path: str) -> int:
    """The largest |u8 x s8 pair sum| the model's weights allow (activations at 255): above
    32,767 an AVX2 kernel without VNNI can saturate."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(model_path)
    inits = {i.name: i for i in model.graph.initializer}
    worst = 0
    for node in model.graph.node:
        if node.op_type != "MatMulInteger" or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.int64)
        if w.shape[0] % 2:
            w = np.pad(w, ((0, 1), (0, 0)))
        pair = 255 * (np.abs(w[0::2]) + np.abs(w[1::2]))
        worst = max(worst, int(pair.max()))
    return worst
