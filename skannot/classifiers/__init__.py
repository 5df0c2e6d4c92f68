"""The learning-from-crowds estimators, one file per method."""

from ._aggregate import AggregateClassifier
from ._annot_mix import AnnotMixClassifier
from ._conal import CoNALClassifier
from ._crowd_ar import CrowdARClassifier
from ._crowd_layer import CrowdLayerClassifier
from ._geo_crowd_net import GeoCrowdNetClassifier
from ._madl import MaDLClassifier
from ._trace_reg import TraceRegClassifier
from ._union_net import UnionNetClassifier

__all__ = [
    "AggregateClassifier",
    "AnnotMixClassifier",
    "CoNALClassifier",
    "CrowdARClassifier",
    "CrowdLayerClassifier",
    "GeoCrowdNetClassifier",
    "MaDLClassifier",
    "TraceRegClassifier",
    "UnionNetClassifier",
]
