"""Evaluation: offline FID Inception features, FID/KID/precision/recall, reference caches, sampling, callback."""

from .inception import InceptionFeatures, InceptionWeightsNotFound, build_extractor, find_inception_weights, to_uint8
from .metrics import GenerativeMetrics
from .precision_recall import PrecisionRecall, precision_recall
from .reference import ReferenceStats, StaleReferenceError, load_or_compute_reference, make_provenance

__all__ = [
    "InceptionFeatures",
    "InceptionWeightsNotFound",
    "build_extractor",
    "find_inception_weights",
    "to_uint8",
    "GenerativeMetrics",
    "PrecisionRecall",
    "precision_recall",
    "ReferenceStats",
    "StaleReferenceError",
    "load_or_compute_reference",
    "make_provenance",
]
