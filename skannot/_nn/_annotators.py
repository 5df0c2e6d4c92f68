"""Annotator representations read by annotator models: a learned map of annotator features.

A method whose annotator model reads a vector per annotator (annot-mix's AP
head; MaDL's annotator embedding) can take it from a free row per annotator
(an ``nn.Embedding``), from the annotator's features through
:class:`AnnotatorFeatureMap`, or from both, the row then being a learned
correction to the features' vector (:class:`AnnotatorCorrection`). The map
is affine, so mixing two annotators' feature vectors with a weight ``lam``
gives the same representation as mixing their mapped vectors: the mixup of
annot-mix mixes feature vectors exactly as the paper mixes one-hot vectors
before its (linear) embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from .._random import linear_init_


class AnnotatorFeatureMap(nn.Module):
    """Annotator vectors as an affine map of the annotators' features.

    Parameters
    ----------
    features : Tensor of shape (M, K)
        Encoded (standardised) features of the M training annotators; kept
        as a buffer, so it moves with the module and is pickled with it.
    dim : int
        Size E of the annotator vectors.
    """

    def __init__(self, features, dim):
        super().__init__()
        self.register_buffer("features", torch.as_tensor(features, dtype=torch.float32).clone())
        self.linear = nn.Linear(self.features.shape[1], dim)

    def reset_parameters_(self, generator):
        """Torch's default initialisation of the map, drawn from ``generator``."""
        linear_init_(self.linear.weight, self.linear.bias, generator)

    def set_features(self, features):
        """Replace the training annotators' features (same shape), e.g. for a warm start."""
        with torch.no_grad():
            self.features.copy_(torch.as_tensor(features, dtype=torch.float32))

    def forward(self, annotators):
        """Vectors (P, E) of the training annotators ``annotators`` (P,)."""
        return self.linear(self.features[annotators])

    def table(self):
        """Vectors (M, E) of all training annotators."""
        return self.linear(self.features)

    def encode(self, features):
        """Vectors (N, E) of any annotators given their encoded features (N, K)."""
        return self.linear(features)


class AnnotatorCorrection(nn.Embedding):
    """A learned per-annotator correction added to the features' vector, starting at zero.

    At zero the model starts from the features alone, and a row moves only
    as far as the annotator's own labels pull it. Annotators without labels,
    and new annotators, get the mean correction of the labelled ones.

    Parameters
    ----------
    n_annotators : int
        Number of training annotators M.
    dim : int
        Size E of the annotator vectors.
    """

    def reset_parameters_(self, generator):
        """Set every correction to zero (``generator`` is not drawn from)."""
        with torch.no_grad():
            self.weight.zero_()

    def mean_row(self, labelled):
        """Mean correction (E,) of the ``labelled`` annotators (a BoolTensor of shape (M,))."""
        if not bool(labelled.any()):
            return torch.zeros_like(self.weight[0])
        return self.weight[labelled].mean(0)
