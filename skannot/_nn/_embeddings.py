"""Annotator and instance embeddings of the methods with a learned annotator representation.

CoNAL and MaDL represent annotator ``m`` by a learned vector; their
papers' code computes it as a linear layer applied to the one-hot vector of
``m``, which is a table row plus a shared bias. :class:`AnnotatorEmbedding`
is that layer as a table, so the cost does not grow with the number of
annotators. :class:`OuterProduct` is MaDL's interaction layer between an
annotator embedding and an instance embedding.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class AnnotatorEmbedding(nn.Module):
    """A learned vector per annotator: ``weight[m] + bias``, a linear layer on one-hot annotator vectors.

    Initialised as torch initialises a linear layer with ``n_annotators``
    inputs: every entry of ``weight`` and ``bias`` uniform in
    ``(-1 / sqrt(M), 1 / sqrt(M))``, so that the annotators start close to
    each other (which matters for MaDL's kernel weights).

    In evaluation mode, after :meth:`mark_labelled`, annotators without
    training labels get the mean vector of the labelled ones (the average
    annotator); in training mode every annotator reads its own row.

    Parameters
    ----------
    n_annotators : int
        Number of annotators M.
    embed_dim : int
        Size E of the vectors.
    """

    def __init__(self, n_annotators, embed_dim):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_annotators, embed_dim))
        self.bias = nn.Parameter(torch.empty(embed_dim))
        self.register_buffer("labelled", torch.ones(n_annotators, dtype=torch.bool))
        self.reset_parameters_(None)

    def reset_parameters_(self, generator):
        """Draw the initial values from ``generator`` (torch's global generator when None).

        Parameters
        ----------
        generator : torch.Generator or None
        """
        bound = 1 / math.sqrt(self.weight.shape[0])
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=generator)
            self.bias.uniform_(-bound, bound, generator=generator)

    def mark_labelled(self, labelled):
        """Note which annotators have training labels (a BoolTensor of shape (M,))."""
        self.labelled.copy_(labelled)

    def table(self):
        """The vectors of all annotators, shape (M, E) (their own rows, in any mode)."""
        return self.weight + self.bias

    def forward(self, annotators):
        """Vectors of ``annotators`` (P,), shape (P, E)."""
        rows = self.weight[annotators]
        if not self.training and not bool(self.labelled.all()):
            mean = self.weight[self.labelled].mean(0)
            rows = torch.where(self.labelled[annotators, None], rows, mean)
        return rows + self.bias


class OuterProduct(nn.Module):
    """Outer-product interaction of embeddings (Qu et al., product-based neural networks, ICDM 2016).

    For embeddings ``e_1 .. e_F`` of one pair (here an annotator's and an
    instance's), with ``s = e_1 + ... + e_F``, output unit ``k`` is
    ``s^T W_k s``: all pairwise products of the summed embedding's entries,
    weighted by a learned (E, E) matrix per output unit. MaDL uses it to let
    the annotator model read how annotator and instance interact.

    Parameters
    ----------
    embed_dim : int
        Size E of each embedding.
    output_size : int
        Number K of output units.
    """

    def __init__(self, embed_dim, output_size):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(output_size, embed_dim, embed_dim))
        self.reset_parameters_(None)

    def reset_parameters_(self, generator):
        """Glorot-uniform initial weights from ``generator`` (torch's global one when None).

        Parameters
        ----------
        generator : torch.Generator or None
        """
        nn.init.xavier_uniform_(self.weight, generator=generator)

    def forward(self, *embeddings):
        """``s^T W_k s`` for each pair and output unit.

        Parameters
        ----------
        *embeddings : Tensor of shape (P, E)
            The pairs' embeddings, summed into ``s``.

        Returns
        -------
        products : Tensor of shape (P, K)
        """
        summed = torch.stack(embeddings).sum(0)
        # (P, E) @ (E, K E) -> (P, K, E), then the inner product with s: no (P, E, E) tensor.
        projected = (summed @ self.weight.permute(1, 0, 2).flatten(1)).view(len(summed), -1, summed.shape[1])
        return (projected * summed[:, None, :]).sum(-1)
