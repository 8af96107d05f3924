"""The extractive reader: an ``AutoModelForQuestionAnswering`` checkpoint over retrieved passages.

The default checkpoint ships inside the package (``qa/reader/models/minilm-squad``:
all-MiniLM-L6-v2 fine-tuned here on public SQuAD-format data, see its model card), so
answering works offline and downloads nothing. Any hub id or local directory can replace it
(``--reader-model`` / ``QA_READER_MODEL``), e.g. ``deepset/roberta-base-squad2`` online.

The model loads lazily, once per process per checkpoint, and is optionally quantised to
dynamic int8 (``qa.config.READER_QUANTIZE``) for CPU speed.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qa import config
from qa.answer import Answer, Passage
from qa.reader.calibration import (
    CALIBRATION_FILE,
    CalibrationMismatch,
    Calibrator,
    Candidate,
    answer_score,
    weights_fingerprint,
)
from qa.reader.decoding import decode_candidates, fold_letters, make_answer, trim_span
from qa.reader.windows import MODEL_INPUTS, WindowTokenizer

logger = logging.getLogger(__name__)

#: Where the shipped checkpoint lives (package data).
SHIPPED_READER_DIR: Path = Path(__file__).resolve().parent / "models" / "minilm-squad"
#: Names that mean the shipped checkpoint.
SHIPPED_NAMES = frozenset({"shipped", "minilm-squad", "packaged:minilm-squad"})


class Reader(Protocol):
    """Anything that reads passages and answers (or abstains)."""

    name: str

    def read(self, question: str, passages: list[Passage]) -> Answer: ...


class QAModel(Protocol):
    """A question-answering model as the reader calls it: window arrays in, logits out (PyTorch
    in :class:`TorchQAModel`, ONNX Runtime in :class:`qa.reader.onnx_reader.OnnxQAModel`)."""

    input_names: list[str]

    def logits(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...


class TorchQAModel:
    """A PyTorch ``AutoModelForQuestionAnswering`` (fp32, bf16 autocast or int8) as a :class:`QAModel`."""

    def __init__(self, model: Any) -> None:
        import inspect

        self.model = model
        params = inspect.signature(model.forward).parameters
        # DistilBERT-like models take no token types even where the tokenizer makes them.
        self.input_names = [n for n in MODEL_INPUTS if n in params]

    def logits(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Start and end logits ``(n, L)`` float32 of the windows in ``inputs``."""
        import torch

        # The model's own device: a model being trained on a GPU is evaluated there.
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            out = self.model(**{k: torch.as_tensor(v).to(device) for k, v in inputs.items() if k in self.input_names})
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()


class ReaderUnavailable(RuntimeError):
    """The reader checkpoint cannot be obtained (offline and not cached, missing path, timeout)."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A TCP connection to the hub endpoint opens within ``timeout_s`` (no HTTP retries)."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def locate_checkpoint(model: str) -> tuple[str, bool]:
    """Where to load ``model`` from, without importing PyTorch: ``(name_or_path, local_only)``.

    ``"shipped"`` is the checkpoint inside the package. A local directory or a checkpoint
    already in the Hugging Face cache loads with no network access; otherwise the hub must
    be reachable.

    Raises:
        ReaderUnavailable: with the reason and how to get the checkpoint.
    """
    if model in SHIPPED_NAMES:
        if not (SHIPPED_READER_DIR / "config.json").is_file():
            raise ReaderUnavailable(
                f"the shipped reader is missing from {SHIPPED_READER_DIR}; reinstall the package (pip install -e .)"
            )
        return str(SHIPPED_READER_DIR), True
    how = f"download it once online (`hf download {model}`) or pass a local checkpoint directory (--reader-model / QA_READER_MODEL)"
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ReaderUnavailable(f"reader checkpoint directory {model!r} has no config.json")
        return str(path), True
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ReaderUnavailable(f"reader checkpoint directory {model!r} does not exist")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return model, True
    if _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE"):
        raise ReaderUnavailable(f"reader checkpoint {model!r} is not cached and HF_HUB_OFFLINE is set; {how}")
    if not _hub_reachable():
        raise ReaderUnavailable(f"reader checkpoint {model!r} is not cached and the hub cannot be reached; {how}")
    return model, False


def _download(model: str) -> str:
    """The local folder of hub checkpoint ``model``, downloading what the reader reads (config,
    tokenizer files and one copy of the weights) into the Hugging Face cache."""
    from huggingface_hub import snapshot_download

    text = ["*.json", "*.txt", "*.model"]
    folder = snapshot_download(model, allow_patterns=[*text, "*.safetensors"])
    if not any(Path(folder).glob("*.safetensors")):  # older checkpoints: PyTorch pickles only
        folder = snapshot_download(model, allow_patterns=[*text, "pytorch_model*.bin"])
    return folder


def _local_folder(location: str, local_only: bool) -> str:
    """The folder holding checkpoint ``location`` (from :func:`locate_checkpoint`): itself, a
    cached hub checkpoint's snapshot, or one downloaded now."""
    if Path(location).expanduser().is_dir():
        return str(Path(location).expanduser())
    if not local_only:
        return _download(location)
    from huggingface_hub import snapshot_download

    return snapshot_download(location, local_files_only=True)


def reader_display_name(model: str) -> str:
    """The short name answers carry: ``minilm-squad (shipped)`` or the checkpoint's name."""
    if model in SHIPPED_NAMES:
        return "minilm-squad (shipped)"
    return Path(model).name if Path(model).expanduser().is_dir() else model


_QA_MODELS: dict[tuple[str, str], tuple[WindowTokenizer, QAModel]] = {}
#: The compute mode each loaded (checkpoint, requested mode) resolved to.
_QA_MODES: dict[tuple[str, str], str] = {}
_QA_LOCK = threading.Lock()
_CALIBRATORS: dict[str, Calibrator | None] = {}
#: A reader's calibrator before it has been looked for (``None`` means "has none").
_UNRESOLVED = object()


def forget_calibrator(location: str) -> None:
    """Drop the process's cached calibrator of the checkpoint at ``location`` (as
    :func:`~qa.reader.locate_checkpoint` names it): readers made afterwards load its
    ``calibration.json`` again (after ``calibrate-reader`` rewrote it in this process)."""
    with _QA_LOCK:
        _CALIBRATORS.pop(location, None)


def bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is
    emulated and slower than fp32, so ``"auto"`` takes int8 instead."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


class _Bf16Autocast:
    """The model, called under ``torch.autocast(bfloat16)``: matmuls in bf16, softmax and
    layer norms in fp32 (measured: fp32's accuracy at about 60 % of its time)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, **inputs: Any) -> Any:
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model(**inputs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


QUANTIZE_MODES = config.READER_QUANTIZE_MODES


def torch_auto_mode() -> str:
    """The PyTorch mode for this CPU: ``"bf16"`` where it computes bf16 natively, else ``"int8"``."""
    return "bf16" if bf16_supported() else "int8"


def auto_mode() -> str:
    """What ``"auto"`` computes in on this machine: ``"onnx-q8"`` where onnxruntime and onnx are
    installed (both are dependencies), else :func:`torch_auto_mode`.

    Chosen by measurement (release 3, first 500 of SQuAD 1.1 dev, 2 cores): onnx-q8 is
    within 0.2 F1 of fp32, where torch's int8 (the AVX2 choice before) lost 2.1 F1, starts in
    under a second and answers the most questions/s with 8 callers on both CPU kinds (on a
    real AVX2-only EPYC torch's int8 answers one question ~20 ms sooner, release 4.2); see
    ``qa.config.READER_QUANTIZE`` and the README's speed table.
    A build that cannot be made (no writable cache) falls back to :func:`torch_auto_mode`.
    """
    import importlib.util

    if all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx")):
        return "onnx-q8"
    return torch_auto_mode()


def _quantize(model: Any, mode: str) -> Any:
    """The model as it will compute: ``"bf16"`` autocast, ``"int8"`` dynamic int8 Linear
    layers (weights int8 with one scale per output channel, activations quantised per
    batch), ``"none"`` fp32, or ``"auto"`` (of the PyTorch modes: :func:`torch_auto_mode`).

    ``"onnx-q8"`` (ONNX Runtime, :mod:`qa.reader.onnx_reader`) is built from the checkpoint's
    files, not from a model object: :meth:`TransformersReader.load` makes it."""
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"reader quantization {mode!r} is unknown; use one of {', '.join(QUANTIZE_MODES)}")
    if mode == "onnx-q8":
        raise ValueError("reader quantization 'onnx-q8' is built from a checkpoint's files: load it with TransformersReader(quantize='onnx-q8')")
    if mode == "auto":
        mode = torch_auto_mode()
    if mode == "none":
        return model
    if mode == "bf16":
        return _Bf16Autocast(model)
    import warnings

    import torch

    with warnings.catch_warnings():  # deprecation notices about torchao: not the user's concern
        warnings.simplefilter("ignore")
        # Per output channel: one scale per tensor cost the reader 3.6 EM on SQuAD 1.1 (first
        # 500 of dev: 72.6 vs fp32's 76.2); per channel keeps fp32's (76.6) at the same speed.
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: qconfig}, dtype=torch.qint8)


class TransformersReader:
    """Extractive reader over any ``AutoModelForQuestionAnswering`` checkpoint."""

    def __init__(
        self,
        model: str = config.DEFAULT_READER_MODEL,
        *,
        max_length: int = config.READER_MAX_LENGTH,
        stride: int = config.READER_STRIDE,
        max_answer_tokens: int = config.READER_MAX_ANSWER_TOKENS,
        threshold: float | None = None,
        quantize: str = config.READER_QUANTIZE,
        batch_size: int = 16,
        load_timeout_s: float = config.READER_LOAD_TIMEOUT_S,
    ) -> None:
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"reader threshold {threshold!r} must be between 0 and 1")
        self.model_name = model
        self.name = reader_display_name(model)
        self.max_length = max_length
        self.stride = stride
        self.max_answer_tokens = max_answer_tokens
        # None: the calibrator's threshold (measured with it on training hold-outs), or 0.5
        # for a checkpoint without one (best span and "no answer" equally likely).
        self._threshold = threshold if threshold is not None else config.READER_THRESHOLD
        self.quantize = quantize
        self.batch_size = batch_size
        self.load_timeout_s = load_timeout_s
        self._calibrator: Any = _UNRESOLVED

    def load(self) -> tuple[WindowTokenizer, QAModel]:
        """``(tokenizer, model)``, loaded once per process (raises :class:`ReaderUnavailable`)."""
        key = (self.model_name, self.quantize)
        with _QA_LOCK:
            if key in _QA_MODELS:
                return _QA_MODELS[key]
        location, local_only = locate_checkpoint(self.model_name)
        result: dict[str, Any] = {}

        def load() -> None:
            try:
                from qa.reader.windows import WindowTokenizer

                folder = _local_folder(location, local_only)
                tok = WindowTokenizer.from_checkpoint(folder, local_only=True)
                mode = self.planned_mode
                if mode == "onnx-q8":
                    # Cached per checkpoint: with a built file, neither PyTorch nor transformers
                    # is imported (most of a cold start).
                    from qa.reader.onnx_reader import OnnxReaderUnavailable, load_onnx_q8

                    try:
                        result["value"] = (tok, load_onnx_q8(folder))
                        result["mode"] = mode
                        return
                    except OnnxReaderUnavailable as exc:
                        if self.quantize != "auto":
                            raise
                        mode = torch_auto_mode()
                        logger.warning("reader mode onnx-q8 unavailable (%s): computing in %s instead", exc, mode)
                import torch
                from transformers import AutoModelForQuestionAnswering
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # no "Loading weights" bar on a plain `qa ask`
                hf_logging.set_verbosity_error()
                # fp32 compute whatever the stored precision (the shipped weights are fp16).
                model = AutoModelForQuestionAnswering.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
                model.eval()
                result["value"] = (tok, TorchQAModel(_quantize(model, mode)))
                result["mode"] = mode
            except Exception as exc:  # network errors, missing files, wrong architecture
                result["error"] = exc

        # Bounded: an unreachable hub must not hang the first question.
        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        if not local_only:
            logger.warning("downloading reader checkpoint %s (up to %.0fs)", self.model_name, self.load_timeout_s)
        thread.join(self.load_timeout_s)
        if thread.is_alive():
            raise ReaderUnavailable(f"reader checkpoint {self.model_name!r} did not load within {self.load_timeout_s:.0f}s")
        if "error" in result:
            raise ReaderUnavailable(f"reader checkpoint {self.model_name!r} cannot be loaded: {result['error']}")
        with _QA_LOCK:
            _QA_MODES.setdefault(key, result["mode"])
            _QA_MODELS.setdefault(key, result["value"])
            return _QA_MODELS[key]

    @property
    def planned_mode(self) -> str:
        """The compute mode this reader loads in on this machine: ``quantize`` with ``"auto"``
        resolved (:func:`auto_mode`), known without loading; a failed onnx-q8 build under
        ``"auto"`` still falls back (:attr:`mode` says what it runs in)."""
        return auto_mode() if self.quantize == "auto" else self.quantize

    @property
    def mode(self) -> str:
        """The compute mode this reader runs in (``"auto"`` resolved), once loaded; before that
        the mode asked for."""
        return _QA_MODES.get((self.model_name, self.quantize), self.quantize)

    def warm_up(self) -> None:
        """Load the checkpoint and its calibrator now (raises :class:`ReaderUnavailable` if
        either cannot be used)."""
        self.load()
        self.calibrator()

    def calibrator(self) -> Calibrator | None:
        """The checkpoint's confidence calibrator (``calibration.json`` beside its weights),
        loaded once per process; ``None`` when it has none (the score is then the raw
        span-vs-null softmax).

        Raises:
            ReaderUnavailable: the file belongs to other weights or another format (the
                message says how to refit it).
        """
        if self._calibrator is not _UNRESOLVED:
            return self._calibrator  # resolved: no checkpoint lookup on every question
        location, _ = locate_checkpoint(self.model_name)
        with _QA_LOCK:
            if location in _CALIBRATORS:
                self._calibrator = _CALIBRATORS[location]
                return self._calibrator
        path = Path(location) / CALIBRATION_FILE
        found: Calibrator | None = None
        if path.is_file():
            try:
                found = Calibrator.load(path, model_sha256=weights_fingerprint(location))
            except (CalibrationMismatch, OSError) as exc:
                raise ReaderUnavailable(str(exc)) from exc
        else:
            logger.info("reader %s has no %s: its score is the uncalibrated span-vs-null softmax", self.name, CALIBRATION_FILE)
        with _QA_LOCK:
            self._calibrator = _CALIBRATORS.setdefault(location, found)
            return self._calibrator

    @property
    def threshold(self) -> float:
        """Below this score the reader says "I don't know"."""
        if self._threshold is not None:
            return self._threshold
        cal = self.calibrator()
        return cal.threshold if cal is not None else 0.5

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = value

    def score(self, question: str, candidates: list[Candidate], null_logit: float, passages: list[Passage]) -> float:
        """The score shown for ``candidates[0]``: P(correct) from the calibrator, else the
        raw softmax of best span vs "no answer" (:func:`~qa.reader.calibration.answer_score`)."""
        return answer_score(self.calibrator(), question, candidates, null_logit, passages)

    def read(self, question: str, passages: list[Passage]) -> Answer:
        """Answer from ``passages``: all windows of all passages in one batched pass.

        The best span over all passages is the answer when its score (:meth:`score`: the
        chance it is right) reaches ``threshold``; below it the answer is "I don't know"
        with that span as a guess.
        """
        if not passages:
            return make_answer(question, None, 0.0, self.name, passages)
        candidates, null = self.candidates(question, passages)
        if not candidates:
            return make_answer(question, None, 0.0, self.name, passages)
        best = candidates[0]
        passage, start, end = passages[best.passage], best.start, best.end
        confidence = self.score(question, candidates, null, passages) if start < end else 0.0
        if confidence < self.threshold or start >= end:
            return make_answer(question, None, confidence, self.name, passages, guess=(passage, start, end))
        return make_answer(question, (passage, start, end), confidence, self.name, passages)

    def candidates(self, question: str, passages: list[Passage]) -> tuple[list[Candidate], float]:
        """The decoded spans of ``passages`` for ``question``, best first (a few per window,
        in passage characters), and the "no answer" logit: what :meth:`read` decides on and
        what the calibrator is fitted on."""
        tokenizer, model = self.load()
        if not passages:
            return [], float("inf")
        # The cut question is only what the model reads: the Answer keeps the user's question.
        model_question, stride = tokenizer.fit_question(fold_letters(question), max_length=self.max_length, stride=self.stride)
        texts = [fold_letters(p.text) for p in passages]  # same length: offsets hold for p.text
        windows = tokenizer.windows([model_question] * len(passages), texts, max_length=self.max_length, stride=stride)
        starts, ends = [], []
        for b in range(0, len(windows), self.batch_size):
            start, end = model.logits(windows.inputs(slice(b, b + self.batch_size)))
            starts.append(start)
            ends.append(end)
        spans, null = decode_candidates(np.concatenate(starts), np.concatenate(ends), windows.context, max_answer_tokens=self.max_answer_tokens)
        candidates = []
        for span in spans:
            offsets = windows.offsets[span.window]
            p = int(windows.sample[span.window])
            start, end = trim_span(passages[p].text, int(offsets[span.start_token][0]), int(offsets[span.end_token][1]))
            candidates.append(Candidate(p, start, end, span.logit))
        return candidates, null


# --------------------------------------------------------------------------- selection

_READERS: dict[str, Reader] = {}
# Held while a reader is resolved: concurrent first questions (the chat serves several at
# once) must not each load a checkpoint.
_READERS_LOCK = threading.Lock()

#: Reader names accepted by ``get_reader`` / ``ask(reader=...)`` / ``--reader``.
READER_NAMES = ("transformers", "auto")


def get_reader(reader: str | Reader | None = None, *, model: str | None = None) -> Reader:
    """The reader to answer with: a reader object as is, or the transformers reader over
    ``model`` (default: the shipped checkpoint, ``qa.config.DEFAULT_READER_MODEL``), loaded.

    ``reader`` may be ``None``, ``"transformers"`` or ``"auto"`` (the same thing; kept for
    scripts written before there was one reader).

    Raises:
        ValueError: unknown reader name.
        ReaderUnavailable: the checkpoint cannot load (the message says how to get it).
    """
    if reader is not None and not isinstance(reader, str):
        if not callable(getattr(reader, "read", None)):
            raise ValueError(f"reader={reader!r} is neither a reader name nor an object with read(question, passages)")
        return reader
    choice = (reader or "transformers").lower()
    if choice not in READER_NAMES:
        raise ValueError(
            f"reader={reader!r} is unknown; use 'transformers' (the default) and pick a checkpoint with "
            "--reader-model / QA_READER_MODEL"
        )
    name = model or config.DEFAULT_READER_MODEL
    with _READERS_LOCK:
        if name not in _READERS:
            resolved = TransformersReader(name)
            resolved.warm_up()
            _READERS[name] = resolved
        return _READERS[name]
