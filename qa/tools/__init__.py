"""Tools over the whole pipeline: the command line, evaluation, calibration and benchmarks.

They sit above every stage (ingest, retrieval, reader, :mod:`qa.pipeline`) and nothing below
imports them.

* :mod:`qa.tools.cli` -- the ``qa`` command (also ``python -m qa``).
* :mod:`qa.tools.evaluation` -- labelled question sets through ``ask()``: EM, F1, calibration,
  retriever comparison (``qa eval``, ``notebooks/evaluation.ipynb``).
* :mod:`qa.tools.calibrate` -- fits the reader's calibrator on held-out training articles run
  through the real pipeline (``qa calibrate-reader``).
* :mod:`qa.tools.bench` -- ``qa bench ask|index|scale|...``: speed, printed as numbers.
* :mod:`qa.tools.bench_api` -- ``qa bench api``: many signed-in clients against the HTTP API.
"""
