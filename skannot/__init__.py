"""skannot: classifiers trained on noisy labels from several annotators."""

from ._accelerate import AcceleratedAnnotMixClassifier
from ._config import FAST_PATHS, config_context, get_config, set_config
from ._nn import MLP
from .classifiers import (
    AggregateClassifier,
    AnnotMixClassifier,
    CoNALClassifier,
    CrowdARClassifier,
    CrowdLayerClassifier,
    GeoCrowdNetClassifier,
    MaDLClassifier,
    TraceRegClassifier,
    UnionNetClassifier,
)

__all__ = [
    "FAST_PATHS",
    "AcceleratedAnnotMixClassifier",
    "AggregateClassifier",
    "AnnotMixClassifier",
    "CoNALClassifier",
    "CrowdARClassifier",
    "CrowdLayerClassifier",
    "GeoCrowdNetClassifier",
    "MLP",
    "MaDLClassifier",
    "TraceRegClassifier",
    "UnionNetClassifier",
    "config_context",
    "get_config",
    "set_config",
]
__version__ = "0.1.0"
