"""Encoders and the persisted FAISS index: everything that turns text into vectors and back."""

from embeddings.encoder import Encoder, SentenceTransformerEncoder, get_encoder
from embeddings.index import FORMAT_VERSION, IndexLoadError, VectorIndex

__all__ = [
    "FORMAT_VERSION",
    "Encoder",
    "IndexLoadError",
    "SentenceTransformerEncoder",
    "VectorIndex",
    "get_encoder",
]
