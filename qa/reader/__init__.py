"""Readers: turn a question and retrieved passages into an :class:`~qa.answer.Answer`.

* :mod:`qa.reader.transformers_reader` -- the reader: an extractive checkpoint
  (``AutoModelForQuestionAnswering``), by default the one shipped in the package.
* :mod:`qa.reader.decoding` -- SQuAD2 span decoding (best span vs "no answer").
* :mod:`qa.reader.squad` -- SQuAD-format data and training features.
* :mod:`qa.reader.training` -- ``python -m qa train-reader``.
* :mod:`qa.reader.squad_eval` -- ``python -m qa eval-reader`` (SQuAD EM/F1).
"""

from qa.reader.decoding import SpanScore, best_spans, decode, make_answer, span_confidence, trim_span
from qa.reader.transformers_reader import (
    READER_NAMES,
    SHIPPED_READER_DIR,
    Reader,
    ReaderUnavailable,
    TransformersReader,
    get_reader,
    locate_checkpoint,
    reader_display_name,
)

__all__ = [
    "READER_NAMES",
    "SHIPPED_READER_DIR",
    "Reader",
    "ReaderUnavailable",
    "SpanScore",
    "TransformersReader",
    "best_spans",
    "decode",
    "get_reader",
    "locate_checkpoint",
    "make_answer",
    "reader_display_name",
    "span_confidence",
    "trim_span",
]
