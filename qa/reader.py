"""Readers: turn a question and retrieved passages into an :class:`~qa.answer.Answer`.

One small interface, two implementations:

* :class:`TransformersReader` -- a SQuAD2-style extractive checkpoint
  (``AutoModelForQuestionAnswering``) loaded by hub id or local path; spans are decoded
  here from the start/end logits (transformers 5 has no question-answering pipeline).
* :class:`qa.offline_reader.OfflineReader` -- built only from packaged models, used when
  no reader checkpoint is reachable.

``get_reader("auto")`` picks the first that works; ``Answer.reader`` names it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qa import config
from qa.answer import Answer, Citation, Passage

logger = logging.getLogger(__name__)


class Reader(Protocol):
    """Anything that reads passages and answers (or abstains)."""

    name: str

    def read(self, question: str, passages: list[Passage]) -> Answer: ...


def make_answer(
    question: str, span: tuple[Passage, int, int] | None, score: float, reader: str, passages: list[Passage]
) -> Answer:
    """Build an :class:`Answer`; ``span`` is ``(passage, start, end)`` in passage characters, or ``None``."""
    score = float(min(max(score, 0.0), 1.0))
    if span is None:
        return Answer(question=question, text=None, score=score, reader=reader, citations=[], passages=list(passages))
    passage, start, end = span
    citation = Citation(
        doc_id=passage.doc_id,
        source=passage.source,
        chunk_id=passage.chunk_id,
        passage=passage.text,
        passage_start=passage.start,
        passage_end=passage.end,
        answer_start=passage.start + start,
        answer_end=passage.start + end,
        page=passage.page_of(passage.start + start),
    )
    return Answer(question, passage.text[start:end], score, reader, [citation], list(passages))


# --------------------------------------------------------------------------- span decoding


@dataclass(frozen=True)
class SpanScore:
    """A decoded span: its window, token range and logit score (start + end)."""

    window: int
    start_token: int
    end_token: int
    logit: float


def best_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    context_mask: np.ndarray,
    *,
    max_answer_tokens: int,
    top_n: int = 1,
) -> list[tuple[int, int, float]]:
    """Best ``(start, end, start_logit + end_logit)`` spans of one window.

    Only context tokens may start or end a span, ``start <= end < start + max_answer_tokens``.
    """
    idx = np.flatnonzero(context_mask)
    if idx.size == 0:
        return []
    s = start_logits[idx][:, None] + end_logits[idx][None, :]
    offsets = idx[None, :] - idx[:, None]
    s = np.where((offsets >= 0) & (offsets < max_answer_tokens), s, -np.inf)
    flat = np.argsort(s, axis=None)[::-1][:top_n]
    out = []
    for f in flat:
        i, j = np.unravel_index(f, s.shape)
        if np.isfinite(s[i, j]):
            out.append((int(idx[i]), int(idx[j]), float(s[i, j])))
    return out


def decode(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    context_masks: np.ndarray,
    *,
    max_answer_tokens: int = 30,
) -> tuple[SpanScore | None, float]:
    """SQuAD2 decoding over all windows of all passages of one question.

    Returns the best non-null span and the null score (the minimum over windows of the
    ``[CLS]`` start+end logits, as in the SQuAD2 reference). Compare ``best.logit`` with
    the null score to decide whether to answer.
    """
    best: SpanScore | None = None
    null = float("inf")
    for w in range(len(start_logits)):
        null = min(null, float(start_logits[w][0] + end_logits[w][0]))
        for i, j, logit in best_spans(start_logits[w], end_logits[w], context_masks[w], max_answer_tokens=max_answer_tokens):
            if best is None or logit > best.logit:
                best = SpanScore(w, i, j, logit)
    return best, null


def span_confidence(best_logit: float, null_logit: float) -> float:
    """P(answer) under a two-way softmax of best span vs no answer; comparable across questions."""
    return float(1.0 / (1.0 + np.exp(-(best_logit - null_logit))))


# --------------------------------------------------------------------------- transformers reader

_QA_MODELS: dict[str, tuple[Any, Any]] = {}
_QA_LOCK = threading.Lock()


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

    A local directory or a checkpoint already in the Hugging Face cache loads with no
    network access; otherwise the hub must be reachable.

    Raises:
        ReaderUnavailable: with the reason and how to get the checkpoint.
    """
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


class TransformersReader:
    """Extractive reader over any ``AutoModelForQuestionAnswering`` checkpoint."""

    def __init__(
        self,
        model: str = config.DEFAULT_READER_MODEL,
        *,
        max_length: int = 384,
        stride: int = 128,
        max_answer_tokens: int = 30,
        threshold: float = 0.5,
        batch_size: int = 16,
        load_timeout_s: float = config.READER_LOAD_TIMEOUT_S,
    ) -> None:
        self.model_name = model
        self.name = f"transformers ({model})"
        self.max_length = max_length
        self.stride = stride
        self.max_answer_tokens = max_answer_tokens
        self.threshold = threshold
        self.batch_size = batch_size
        self.load_timeout_s = load_timeout_s

    def _load(self) -> tuple[Any, Any]:
        with _QA_LOCK:
            if self.model_name in _QA_MODELS:
                return _QA_MODELS[self.model_name]
        location, local_only = locate_checkpoint(self.model_name)
        result: dict[str, Any] = {}

        def load() -> None:
            try:
                from transformers import AutoModelForQuestionAnswering, AutoTokenizer

                tok = AutoTokenizer.from_pretrained(location, local_files_only=local_only)
                model = AutoModelForQuestionAnswering.from_pretrained(location, local_files_only=local_only)
                model.eval()
                result["value"] = (tok, model)
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
            _QA_MODELS[self.model_name] = result["value"]
        return result["value"]

    def warm_up(self) -> None:
        """Load the checkpoint now (raises :class:`ReaderUnavailable` if it cannot)."""
        self._load()

    def read(self, question: str, passages: list[Passage]) -> Answer:
        """Answer from ``passages``: all windows of all passages in one batched pass."""
        import torch

        tokenizer, model = self._load()
        if not passages:
            return make_answer(question, None, 0.0, self.name, passages)
        pad_right = tokenizer.padding_side == "right"
        enc = tokenizer(
            [question] * len(passages) if pad_right else [p.text for p in passages],
            [p.text for p in passages] if pad_right else [question] * len(passages),
            truncation="only_second" if pad_right else "only_first",
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="longest",
            return_tensors="np",
        )
        context_id = 1 if pad_right else 0
        n = len(enc["input_ids"])
        masks = np.zeros(enc["input_ids"].shape, dtype=bool)
        for w in range(n):
            masks[w] = [sid == context_id for sid in enc.sequence_ids(w)]
        starts, ends = [], []
        inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.inference_mode():
            for b in range(0, n, self.batch_size):
                out = model(**{k: torch.as_tensor(v[b : b + self.batch_size]) for k, v in inputs.items()})
                starts.append(out.start_logits.float().numpy())
                ends.append(out.end_logits.float().numpy())
        best, null = decode(np.concatenate(starts), np.concatenate(ends), masks, max_answer_tokens=self.max_answer_tokens)
        if best is None:
            return make_answer(question, None, 0.0, self.name, passages)
        confidence = span_confidence(best.logit, null)
        passage = passages[int(enc["overflow_to_sample_mapping"][best.window])]
        offsets = enc["offset_mapping"][best.window]
        start, end = int(offsets[best.start_token][0]), int(offsets[best.end_token][1])
        # Offsets can include a leading space (byte-level BPE); answers are trimmed spans.
        while start < end and passage.text[start].isspace():
            start += 1
        if confidence < self.threshold or start >= end:
            return make_answer(question, None, confidence, self.name, passages)
        return make_answer(question, (passage, start, end), confidence, self.name, passages)


# --------------------------------------------------------------------------- selection

_READERS: dict[str, Reader] = {}
# Held while a reader is resolved: concurrent first questions (the chat serves several at
# once) must not each load a checkpoint or each log the fallback line.
_READERS_LOCK = threading.Lock()


def get_reader(reader: str | Reader | None = None, *, model: str | None = None) -> Reader:
    """Resolve ``reader``: ``"auto"``, ``"transformers"``, ``"offline"`` or a reader object.

    ``"auto"`` uses the transformers reader when its checkpoint loads, else the offline
    reader, logging one line that says why and how to get the checkpoint.

    Raises:
        ValueError: unknown reader name.
        ReaderUnavailable: ``"transformers"`` was asked for and cannot load.
    """
    if reader is not None and not isinstance(reader, str):
        return reader
    choice = (reader or config.DEFAULT_READER).lower()
    if choice not in ("auto", "transformers", "offline"):
        raise ValueError(f"reader={reader!r} is unknown; use 'auto', 'transformers' or 'offline'")
    key = f"{choice}:{model or config.DEFAULT_READER_MODEL}"
    with _READERS_LOCK:
        if key not in _READERS:
            _READERS[key] = _resolve_reader(choice, model)
        return _READERS[key]


def _resolve_reader(choice: str, model: str | None) -> Reader:
    """Build the reader ``choice`` names (for ``"auto"``: transformers if it loads, else offline)."""
    resolved: Reader
    if choice == "offline":
        from qa.offline_reader import OfflineReader

        resolved = OfflineReader()
    else:
        transformers_reader = TransformersReader(model or config.DEFAULT_READER_MODEL)
        try:
            transformers_reader.warm_up()
            resolved = transformers_reader
        except ReaderUnavailable as exc:
            if choice == "transformers":
                raise
            logger.warning("using the offline reader: %s", exc)
            from qa.offline_reader import OfflineReader

            resolved = OfflineReader()
    return resolved
