"""Question + passage windows, the reader's input: from texts to token arrays with offsets.

Takes a question and passages (or many question/context pairs); gives :class:`Windows`: the
token ids of every window the passages are cut into (``max_length`` tokens, overlapping by
``stride``), which tokens belong to the passage, each token's character span in its passage,
and which pair each window came from.

It drives the Rust ``tokenizers`` library directly, as ``transformers``' fast tokenizers do
underneath (same truncation, overflow and padding, so the windows are identical: a test
compares them). Reading ``tokenizer.json`` needs neither PyTorch nor ``transformers``: the
``onnx-q8`` reader answers without importing either, which is most of its cold start.
Checkpoints without a ``tokenizer.json`` go through ``transformers`` once (its conversion
of a slow tokenizer) and use the fast tokenizer's backend.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The arrays a question-answering model may take, in this order.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Windows:
    """Windows of one or more (question, context) pairs, padded to one length ``L``.

    ``input_ids``, ``attention_mask``, ``token_type_ids``: ``(n, L)`` int64 (type ids ``None``
    where the model takes none); ``context``: ``(n, L)`` bool, the tokens of the context;
    ``offsets``: ``(n, L, 2)`` character spans of the tokens in their context (question and
    special tokens included, as the tokenizer gives them); ``sample``: ``(n,)`` the pair each
    window belongs to.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray | None
    context: np.ndarray
    offsets: np.ndarray
    sample: np.ndarray

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def inputs(self, rows: slice | np.ndarray = slice(None)) -> dict[str, np.ndarray]:
        """The model's input arrays for windows ``rows``."""
        out = {"input_ids": self.input_ids[rows], "attention_mask": self.attention_mask[rows]}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids[rows]
        return out

    def row(self, r: int) -> Windows:
        """Window ``r`` alone, without its padding (a ``(1, length)`` :class:`Windows`): what
        training stores per window and what quantisation calibrates on."""
        keep = self.attention_mask[r].astype(bool)
        return Windows(
            self.input_ids[r : r + 1, keep],
            self.attention_mask[r : r + 1, keep],
            None if self.token_type_ids is None else self.token_type_ids[r : r + 1, keep],
            self.context[r : r + 1, keep],
            self.offsets[r : r + 1, keep],
            self.sample[r : r + 1],
        )


class WindowTokenizer:
    """A checkpoint's tokenizer, cutting (question, context) pairs into reader windows.

    Thread-safe: the backend's truncation and padding settings are per call, so calls are
    serialised (tokenising five passages takes about a millisecond).
    """

    def __init__(self, backend: Any, *, pad_right: bool = True, pad_token: str | None = None, type_ids: bool = True) -> None:
        self.backend = backend
        self.pad_right = pad_right
        self.type_ids = type_ids
        pad_id = backend.token_to_id(pad_token) if pad_token else None
        if pad_id is None:
            pad_id, pad_token = 0, pad_token or backend.id_to_token(0)
        self.pad_id, self.pad_token = pad_id, pad_token
        self._lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, folder: str | Path, *, local_only: bool = True) -> WindowTokenizer:
        """The tokenizer of the checkpoint in ``folder`` (a directory, or a hub id when it has
        no ``tokenizer.json`` there): ``tokenizer.json`` read directly, else via transformers."""
        path = Path(folder).expanduser()
        settings = _tokenizer_config(path)
        pad_right = settings.get("padding_side", "right") != "left"
        pad_token = _token_text(settings.get("pad_token"))
        if (path / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            backend = Tokenizer.from_file(str(path / "tokenizer.json"))
            names = settings.get("model_input_names")
            type_ids = "token_type_ids" in names if names else _makes_type_ids(backend)
            return cls(backend, pad_right=pad_right, pad_token=pad_token, type_ids=type_ids)
        from transformers import AutoTokenizer

        return cls.from_transformers(AutoTokenizer.from_pretrained(str(folder), local_files_only=local_only))

    @classmethod
    def from_transformers(cls, tokenizer: Any) -> WindowTokenizer:
        """The windows of a loaded ``transformers`` fast tokenizer (its Rust backend, copied so
        the original's settings are left alone)."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer; the reader needs one (a tokenizer.json)")
        from tokenizers import Tokenizer

        return cls(
            Tokenizer.from_str(backend.to_str()),
            pad_right=tokenizer.padding_side == "right",
            pad_token=tokenizer.pad_token,
            type_ids="token_type_ids" in tokenizer.model_input_names,
        )

    @classmethod
    def of(cls, tokenizer: Any) -> WindowTokenizer:
        """``tokenizer`` itself when it is a ``WindowTokenizer``, else the windows of a loaded
        ``transformers`` fast tokenizer (:meth:`from_transformers`)."""
        return tokenizer if isinstance(tokenizer, cls) else cls.from_transformers(tokenizer)

    def ids(self, text: str) -> list[int]:
        """``text``'s token ids without special tokens."""
        with self._lock:
            self.backend.no_truncation()
            self.backend.no_padding()
            return list(self.backend.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        """The text of token ids."""
        return self.backend.decode(ids)

    def fit_question(self, question: str, *, max_length: int, stride: int) -> tuple[str, int]:
        """``question`` as a window of ``max_length`` tokens can hold it, and the overlap to use:
        a long question leaves little room for the passage, so it is cut to half the window at
        most (some passage always fits) and the overlap is kept below what is left (the
        tokenizer refuses otherwise). The cut question is only what the model reads."""
        ids = self.ids(question)
        if len(ids) > max_length // 2:
            ids = ids[: max_length // 2]
            question = self.decode(ids)
        return question, min(stride, max(0, (max_length - len(ids) - 4) // 2))

    def windows(self, questions: list[str], contexts: list[str], *, max_length: int, stride: int, pad: bool = True) -> Windows:
        """Each (question, context) pair as windows of at most ``max_length`` tokens: the whole
        question and a slice of the context, consecutive slices overlapping by ``stride``
        tokens. Windows are padded to the longest (``pad=False``: each pair's padded to its own
        longest, for callers that take them one pair at a time).

        The question comes first where the tokenizer pads right (BERT-like), second where it
        pads left, as the checkpoint was trained.
        """
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions for {len(contexts)} contexts: give one question per context")
        first, second = (questions, contexts) if self.pad_right else (contexts, questions)
        with self._lock:
            self.backend.enable_truncation(
                max_length, stride=stride, strategy="only_second" if self.pad_right else "only_first", direction="right"
            )
            if pad:
                self.backend.enable_padding(
                    direction="right" if self.pad_right else "left", pad_id=self.pad_id, pad_token=self.pad_token, pad_type_id=0
                )
            else:
                self.backend.no_padding()
            encodings = self.backend.encode_batch(list(zip(first, second, strict=True)))
        flat, sample = [], []
        for i, enc in enumerate(encodings):  # transformers' order: each pair's first window, then its overflow
            for window in [enc, *enc.overflowing]:
                flat.append(window)
                sample.append(i)
        context_id = 1 if self.pad_right else 0
        width = max((len(w.ids) for w in flat), default=0)
        n = len(flat)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        context = np.zeros((n, width), dtype=bool)
        offsets = np.zeros((n, width, 2), dtype=np.int64)
        for r, w in enumerate(flat):
            k = len(w.ids)
            at = slice(0, k) if self.pad_right else slice(width - k, width)
            ids[r, at] = w.ids
            mask[r, at] = w.attention_mask
            types[r, at] = w.type_ids
            context[r, at] = [s == context_id for s in w.sequence_ids]
            offsets[r, at] = w.offsets
        return Windows(ids, mask, types if self.type_ids else None, context, offsets, np.asarray(sample, dtype=np.int64))


def _tokenizer_config(folder: Path) -> dict[str, Any]:
    """``tokenizer_config.json`` of a checkpoint folder (``{}`` when there is none)."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _token_text(token: Any) -> str | None:
    """A special token as ``tokenizer_config.json`` writes it: a string or ``{"content": ...}``."""
    if isinstance(token, dict):
        return token.get("content")
    return token if isinstance(token, str) else None


def _makes_type_ids(backend: Any) -> bool:
    """Whether the post-processor gives the second sequence its own type id (BERT does,
    RoBERTa does not): then the model takes ``token_type_ids``."""
    encoding = backend.encode("a", "b")
    return any(t != 0 for t in encoding.type_ids)
