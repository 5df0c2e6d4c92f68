"""The learning-from-crowds estimators, one file per method."""

from ._annot_mix import AnnotMixClassifier

__all__ = ["AnnotMixClassifier"]
