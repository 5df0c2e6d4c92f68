"""The learning-from-crowds estimators, one file per method."""

from ._aggregate import AggregateClassifier
from ._annot_mix import AnnotMixClassifier

__all__ = ["AggregateClassifier", "AnnotMixClassifier"]
