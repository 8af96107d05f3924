"""Encoders: text in, unit-length float32 vectors out (all-MiniLM-L6-v2 by default).

* :mod:`embeddings.encoders.encoder` -- the :class:`~embeddings.encoders.encoder.Encoder`
  interface, :func:`~embeddings.encoders.encoder.get_encoder` (one cached encoder per process)
  and the sentence-transformers (PyTorch) variants ``fp32|bf16|int8``.
* :mod:`embeddings.encoders.onnx_encoder` -- the ONNX Runtime variants ``onnx-q8`` (default)
  and ``onnx-int8``; answering through them never imports PyTorch.
* :mod:`embeddings.encoders.onnx_quant` -- builds the ``onnx-q8`` model once per weights
  (SmoothQuant with the shipped ranges in ``data/``, dynamic int8), cached in ``QA_CACHE_DIR``.
* :mod:`embeddings.encoders.variants` -- variant names and the check that a question is
  embedded like the index it searches.
* :mod:`embeddings.encoders.model_files` / :mod:`embeddings.encoders.progress` -- where the
  packaged model files are; progress bars that stay quiet when asked.
"""
