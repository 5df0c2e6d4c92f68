"""The default tabular ground-truth (GT) model and the mixing of rows.

A GT model maps instances to class logits and an instance embedding, which
the annotator models of the methods read.
"""

from __future__ import annotations

import torch
from torch import nn

from .._fast import keep_mask


def mix(own, other, lam):
    """Row-wise convex combination ``lam * own + (1 - lam) * other``.

    Parameters
    ----------
    own, other : Tensor of shape (P, ...)
    lam : Tensor of shape (P,)
        Weight of ``own``.

    Returns
    -------
    mixed : Tensor of shape (P, ...)
    """
    lam = lam.view(-1, *([1] * (own.dim() - 1))).to(own.dtype)
    return lam * own + (1 - lam) * other


def swap_class(module, old, new):
    """Turn every layer of exactly class ``old`` inside ``module`` (itself included) into ``new``, in place.

    The layers keep their parameters, buffers and settings; only their class
    changes (``new`` must add behaviour, not state).

    Parameters
    ----------
    module : nn.Module
    old, new : type

    Returns
    -------
    module : nn.Module
    """
    for layer in module.modules():
        if type(layer) is old:
            layer.__class__ = new
    return module


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` that draws its masks from a given generator, fast on the CPU.

    During ``fit`` the layer draws its masks from the fit's own generator
    (``generator``, set by the net), never from torch's global one. With
    ``fast_masks`` True (the ``byte_masks`` fast path, set by ``fit`` from
    :func:`skannot.config_context`), a CPU mask comes from
    :func:`~skannot._fast.keep_mask`: the same distribution (each unit kept
    with probability ``1 - p`` and scaled by ``1 / (1 - p)``) at a fraction of
    the cost of torch's Bernoulli sampler; otherwise from torch's Bernoulli
    sampler. Outside a fit (no generator, no fast masks) it is torch's dropout.
    """

    fast_masks = False
    generator = None

    @classmethod
    def convert(cls, module):
        """Turn every plain :class:`torch.nn.Dropout` inside ``module`` (itself included) into this class.

        The layers keep their settings; only their class changes, so that
        they draw their masks from the fit's generator.

        Parameters
        ----------
        module : nn.Module

        Returns
        -------
        module : nn.Module
        """
        return swap_class(module, nn.Dropout, cls)

    def use_fast_paths(self, fast_paths):
        """Turn the ``byte_masks`` fast path on or off (called by ``fit``)."""
        self.fast_masks = "byte_masks" in fast_paths

    def use_generator(self, generator):
        """Draw the masks from ``generator`` (a generator on the input's device; None: torch's dropout)."""
        self.generator = generator

    def forward(self, x):
        if not self.training or self.p == 0 or self.inplace:
            return super().forward(x)
        if self.generator is None and not (self.fast_masks and x.device.type == "cpu"):
            return super().forward(x)
        if self.p == 1:
            return x * 0
        return x * self.mask(x.shape, x.device).to(x.dtype)

    def mask(self, shape, device):
        """A dropout mask of ``shape``: zeros and ``1 / (1 - p)``."""
        scale = 1 / (1 - self.p)
        if self.fast_masks and device.type == "cpu":
            return keep_mask(shape, self.p, device, scale, self.generator)
        mask = torch.empty(shape, device=device).bernoulli_(1 - self.p, generator=self.generator)
        return mask.mul_(scale)

    def __getstate__(self):
        # The generator belongs to the fit that set it; a later fit sets its own.
        state = super().__getstate__()
        state.pop("generator", None)
        return state


class MLP(nn.Module):
    """Default tabular GT model: an MLP that returns logits and an embedding.

    Each hidden block is ``Linear -> BatchNorm1d (optional) -> ReLU -> Dropout``;
    the output of the last block is the instance embedding and a final linear
    layer gives the class logits.

    Parameters
    ----------
    n_features : int
        Number of input features.
    n_classes : int
        Number of classes.
    hidden_sizes : sequence of int, default=(256, 128)
        Width of each hidden block. Must not be empty: the last block's output
        is the embedding the annotator head reads.
    dropout : float, default=0.5
        Dropout probability after each hidden block.
    batch_norm : bool, default=True
        Whether to put batch normalisation in each hidden block.

    Notes
    -----
    ``forward(x)`` takes ``x`` of shape (batch, n_features) and returns
    ``(logits, embedding)`` of shapes (batch, n_classes) and
    (batch, hidden_sizes[-1]). Any module with this contract can replace it
    as ``module=...`` of any estimator of the family.
    """

    def __init__(self, n_features, n_classes, hidden_sizes=(256, 128), dropout=0.5, batch_norm=True):
        super().__init__()
        if len(hidden_sizes) == 0:
            raise ValueError("hidden_sizes must name at least one hidden layer.")
        layers, width = [], n_features
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(Dropout(dropout))
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        """Class logits and the last hidden layer.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)

        Returns
        -------
        logits : Tensor of shape (batch, n_classes)
        embedding : Tensor of shape (batch, hidden_sizes[-1])
        """
        embedding = self.body(x)
        return self.head(embedding), embedding


def mix_pairs(tensor, lam, partner):
    """Convex combination of each row with its partner row.

    Parameters
    ----------
    tensor : Tensor of shape (P, ...)
    lam : Tensor of shape (P,)
        Weight of the row itself.
    partner : LongTensor of shape (P,)
        Index of each row's partner.

    Returns
    -------
    mixed : Tensor of shape (P, ...)
        ``lam * tensor + (1 - lam) * tensor[partner]``.
    """
    return mix(tensor, tensor[partner], lam)
