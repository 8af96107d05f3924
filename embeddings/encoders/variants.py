"""Encoder variants and their revisions (see :mod:`embeddings.encoders.encoder`): the names, the tags an
index records, and the check that questions are embedded the way an index's documents were.

Below :mod:`embeddings.encoders.encoder`, :mod:`embeddings.encoders.onnx_encoder` and every store, which all
use it; it imports nothing of them (only the error type and the ONNX recipe's version).
"""

from __future__ import annotations

from embeddings.encoders.onnx_quant import RECIPE_VERSION
from embeddings.errors import IndexLoadError, rebuild_hint

#: Encoder variants (see the module docstring); the first is the default.
VARIANTS: tuple[str, ...] = ("onnx-q8", "onnx-int8", "fp32", "bf16", "int8")
#: The variant of an index whose manifest names none (written before variants existed).
LEGACY_VARIANT = "fp32"
#: Variants computed by sentence-transformers in PyTorch.
TORCH_VARIANTS = frozenset({"fp32", "bf16", "int8"})
#: Variants computed by ONNX Runtime, all-MiniLM-L6-v2 only (embeddings.encoders.onnx_encoder): the
#: packaged file as it is, and the int8-compute model derived from it (embeddings.encoders.onnx_quant).
ONNX_VARIANTS: tuple[str, ...] = ("onnx-int8", "onnx-q8")
#: Current revision of variants whose vectors changed between releases (absent: revision 1).
#: onnx-q8 2: 7-bit weights, the same vectors on every x86-64 CPU (embeddings.encoders.onnx_quant).
VARIANT_REVISIONS: dict[str, int] = {"onnx-q8": RECIPE_VERSION}


def check_variant_name(variant: str) -> str:
    """``variant`` if it is one of :data:`VARIANTS`.

    Raises:
        ValueError: an unknown variant (the message lists the known ones).
    """
    if variant not in VARIANTS:
        raise ValueError(f"encoder variant {variant!r} is unknown; use one of {', '.join(VARIANTS)} (QA_ENCODER_VARIANT)")
    return variant


def variant_tag(variant: str) -> str:
    """What an index records for vectors of ``variant`` as this version computes them:
    the name, plus ``@REVISION`` from revision 2 on (``onnx-q8@2``)."""
    revision = VARIANT_REVISIONS.get(variant, 1)
    return variant if revision == 1 else f"{variant}@{revision}"


def split_tag(tag: str) -> tuple[str, int]:
    """``(variant, revision)`` of a recorded tag (``"onnx-q8@2"`` -> ``("onnx-q8", 2)``)."""
    name, _, revision = tag.partition("@")
    return name, int(revision) if revision.isdigit() else 1


def encoder_variant(encoder: object) -> str | None:
    """The tag (:func:`variant_tag`) of the variant ``encoder`` computes with, as indexes record
    it, or ``None`` for an encoder that does not say (a fake)."""
    variant = getattr(encoder, "variant", None)
    if not isinstance(variant, str):
        return None
    return variant_tag(variant) if variant in VARIANTS else variant


def check_encoder_variant(index_variant: str | None, encoder: object, location: object) -> None:
    """Refuse to embed questions for the index at ``location`` with another variant than its
    documents' (:func:`check_variant`); encoders that name no variant are not checked."""
    check_variant(index_variant, encoder_variant(encoder), location)


def check_variant(index_variant: str | None, wanted: str | None, location: object) -> None:
    """Refuse variant ``wanted`` for an index whose documents were embedded as ``index_variant``.

    ``index_variant`` ``None`` (nothing recorded: an index written before variants existed) is
    read as :data:`LEGACY_VARIANT`; ``wanted`` ``None`` checks nothing. ``wanted`` may be a
    recorded tag (``onnx-q8@2``) or a variant name (``onnx-q8``: its current revision); a bare
    name *recorded* in an index is revision 1.

    Raises:
        IndexLoadError: the variants differ; the message names both, the rebuild command and
            the setting that would match the index instead.
    """
    stored = index_variant or LEGACY_VARIANT
    if wanted in VARIANTS:  # a name (a setting) means this version's computation of it
        wanted = variant_tag(wanted)
    if wanted is None or wanted == stored:
        return
    (stored_name, stored_rev), (wanted_name, wanted_rev) = split_tag(stored), split_tag(wanted)
    if stored_name == wanted_name:
        # Same variant, another build of it: the old computation no longer exists, so the
        # only way to a consistent index is re-embedding.
        raise IndexLoadError(
            f"index {str(location)!r} was embedded by revision {stored_rev} of encoder variant {stored_name!r}, "
            f"which this version computes as revision {wanted_rev} (different vectors); {rebuild_hint(location)} "
            f"to re-embed it"
        )
    if stored_rev != VARIANT_REVISIONS.get(stored_name, 1):
        raise IndexLoadError(
            f"index {str(location)!r} was embedded with encoder variant {stored!r}, which this version no longer "
            f"computes, but questions would be embedded with {wanted!r}; {rebuild_hint(location)} (re-embeds it with {wanted!r})"
        )
    raise IndexLoadError(
        f"index {str(location)!r} was embedded with encoder variant {stored!r} but questions would be embedded "
        f"with {wanted!r}; the two must match. {rebuild_hint(location)} (re-embeds it with {wanted!r}), "
        f"or set QA_ENCODER_VARIANT={stored_name} to query it as it is"
    )
