"""The default tabular ground-truth (GT) model and the mixing of rows.

A GT model maps instances to class logits and an instance embedding, which
the annotator models of the methods read.
"""

from __future__ import annotations

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


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` whose CPU masks can come from :func:`skannot._fast.keep_mask`.

    With ``fast_masks`` True (the ``byte_masks`` fast path, set by ``fit``
    from :func:`skannot.config_context`), training-mode dropout on the CPU
    multiplies by a :func:`~skannot._fast.keep_mask` mask: the same
    distribution as torch's (each unit kept with probability ``1 - p`` and
    scaled by ``1 / (1 - p)``), from a different random stream, at a
    fraction of the cost of torch's Bernoulli sampler. Otherwise, and on
    other devices, it is torch's dropout.
    """

    fast_masks = False

    def use_fast_paths(self, fast_paths):
        """Turn the ``byte_masks`` fast path on or off (called by ``fit``)."""
        self.fast_masks = "byte_masks" in fast_paths

    def forward(self, x):
        if not (self.training and self.fast_masks and x.device.type == "cpu") or self.p == 0 or self.inplace:
            return super().forward(x)
        if self.p == 1:
            return x * 0
        return x * self.mask(x.shape, x.device).to(x.dtype)

    def mask(self, shape, device):
        """A :func:`~skannot._fast.keep_mask` dropout mask of ``shape``."""
        return keep_mask(shape, self.p, device, 1 / (1 - self.p))


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
