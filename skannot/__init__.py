"""skannot: classifiers trained on noisy labels from several annotators."""

from ._accelerate import AcceleratedAnnotMixClassifier
from ._annot_mix import AnnotMixClassifier
from ._nn import MLP

__all__ = ["AcceleratedAnnotMixClassifier", "AnnotMixClassifier", "MLP"]
__version__ = "0.1.0"
