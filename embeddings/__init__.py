"""Text to vectors and back: :mod:`embeddings.encoders` (text -> vectors) and
:mod:`embeddings.stores` (where chunks, vectors and keyword postings live, behind one interface:
a directory of FAISS segments or PostgreSQL + pgvector). :mod:`embeddings.errors` holds the
errors both raise."""

from embeddings.encoders.encoder import Encoder, SentenceTransformerEncoder, get_encoder
from embeddings.stores.index import FORMAT_VERSION, IndexLoadError, VectorIndex

__all__ = [
    "FORMAT_VERSION",
    "Encoder",
    "IndexLoadError",
    "SentenceTransformerEncoder",
    "VectorIndex",
    "get_encoder",
]
