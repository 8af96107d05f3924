"""Retrieval: a question in, ranked passages (chunks with their citations) out.

* :mod:`qa.retrieval.bm25` -- the keyword tokenizer shared by indexing and querying
  (its ``TOKENIZER_VERSION`` is recorded in every store).
* :mod:`qa.retrieval.retrievers` -- dense, BM25 and hybrid (reciprocal rank fusion)
  retrievers over the store interface (:mod:`embeddings.stores.base`); they give
  :class:`~qa.answer.Passage` lists.
* :mod:`qa.retrieval.followup` -- a follow-up question ("When did it first fly?") that names
  nothing itself is retrieved with the previous question in front of it.
"""
