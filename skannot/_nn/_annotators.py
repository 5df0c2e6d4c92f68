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


class AnnotatorRepresentation:
    """Mixin of a :class:`~skannot._nn.CrowdModule` whose annotator model reads a vector per annotator.

    It builds the representation that ``representation`` names (the
    estimators' resolved ``annotator_representation``) and gives what the
    representations share: the vectors of all training annotators and those
    of new annotators given by their features. The module keeps its own
    ``annotator_vectors`` (how an annotator without labels is predicted
    depends on its table).

    Attributes set by :meth:`build_annotator_representation`:
    ``representation``; ``annotator_embedding`` (the table, or with
    ``"features+embedding"`` the :class:`AnnotatorCorrection`);
    ``annotator_feature_map`` (with features); and the buffer ``labelled``
    (BoolTensor of shape (M,), all True until ``fit`` marks the annotators
    with training labels).
    """

    def build_annotator_representation(self, n_annotators, dim, features, representation, table):
        """Register the representation's modules and the ``labelled`` buffer.

        Parameters
        ----------
        n_annotators : int
            Number of training annotators M.
        dim : int
            Size E of the annotator vectors.
        features : Tensor of shape (M, K) or None
            Encoded annotator features; required unless ``representation`` is
            ``"embedding"``.
        representation : {"embedding", "features", "features+embedding"}
        table : callable
            ``table(n_annotators, dim)`` builds the free per-annotator table of
            the ``"embedding"`` representation (e.g. ``nn.Embedding``).
        """
        self.representation = representation
        if representation == "embedding":
            self.annotator_embedding = table(n_annotators, dim)
        else:
            self.annotator_feature_map = AnnotatorFeatureMap(features, dim)
            if representation == "features+embedding":
                self.annotator_embedding = AnnotatorCorrection(n_annotators, dim)
        self.register_buffer("labelled", torch.ones(n_annotators, dtype=torch.bool))

    def mark_labelled_annotators(self, labelled):
        """Note which annotators have training labels (BoolTensor of shape (M,), after ``fit``)."""
        self.labelled.copy_(labelled)

    def embedding_table(self):
        """The ``"embedding"`` representation's vectors (M, E) of all annotators (its rows by default)."""
        return self.annotator_embedding.weight

    def annotator_table(self):
        """Vectors (M, E) of all training annotators, each its own (in any mode)."""
        if self.representation == "embedding":
            return self.embedding_table()
        table = self.annotator_feature_map.table()
        if self.representation == "features+embedding":
            table = table + self.annotator_embedding.weight
        return table

    def new_annotator_vectors(self, features):
        """Vectors (N, E) of annotators not in training, from their encoded features (N, K).

        With ``"features+embedding"`` they get the mean correction of the
        labelled annotators.

        Raises
        ------
        ValueError
            With the ``"embedding"`` representation, which has no features.
        """
        if self.representation == "embedding":
            raise ValueError("An annotator table cannot represent new annotators; fit with features.")
        vectors = self.annotator_feature_map.encode(features)
        if self.representation == "features+embedding":
            vectors = vectors + self.annotator_embedding.mean_row(self.labelled)
        return vectors
