"""Ingest: documents in, a searchable store out.

The stage takes files (txt, md, html, pdf, docx) and gives chunks with exact character
offsets, embedded and written to a store, in this order:

* :mod:`qa.ingest.extraction` -- one file -> its text and page offsets (``ExtractionError`` for
  anything it cannot read; hostile files parsed in a worker process with a memory cap).
* :mod:`qa.ingest.documents` -- a folder -> :class:`~qa.ingest.documents.Document` records
  (id, source, sha256, text).
* :mod:`qa.ingest.chunking` -- a document's text -> sentence-aware chunks with ``start``/``end``
  so that ``text[start:end] == chunk``.
* :mod:`qa.ingest.indexing` -- documents -> one change plan (add / replace / remove, checked
  against the store's metadata; documents added with ``qa add`` or an upload are kept and
  only an explicit remove drops them), embedded once, applied by whichever store
  (:mod:`embeddings.stores`) the location names.
"""
