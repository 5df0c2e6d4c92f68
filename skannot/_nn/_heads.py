"""Building blocks of annotator models: the eta prior and the instance-dependent confusion head.

An annotator-performance (AP) model gives ``P(z | x, a, y)``, a C x C
confusion matrix whose row ``y`` is the distribution of annotator ``a``'s
label ``z`` when the true class is ``y``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .._random import linear_init_


def eta_bias(n_classes, eta):
    """Output bias of the AP head whose softmax rows put ``eta`` on the diagonal.

    Parameters
    ----------
    n_classes : int
        Number of classes C.
    eta : float in (1/C, 1)
        Prior probability that an annotator's label is correct.

    Returns
    -------
    bias : Tensor of shape (C * C,)
        Row-major flattened C x C matrix with ``log(eta (C - 1) / (1 - eta))``
        on the diagonal and zero elsewhere.
    """
    diagonal = math.log(eta) - math.log1p(-eta) + math.log(n_classes - 1)
    return (diagonal * torch.eye(n_classes)).flatten()


class AnnotatorHead(nn.Module):
    """AP model: confusion matrices from instance and annotator embeddings.

    ``concat(instance_embedding, annotator_embedding) -> Linear -> ReLU ->
    Linear(C * C)``, with the output weights zero and the output bias set by
    :func:`eta_bias`, so that every confusion matrix starts with ``eta`` on
    its diagonal and ``(1 - eta) / (C - 1)`` elsewhere.

    Parameters
    ----------
    instance_dim : int
        Size D of the GT model's instance embedding.
    annotator_dim : int
        Size E of the annotator embedding.
    hidden_size : int
        Width of the hidden layer.
    n_classes : int
        Number of classes C.
    eta : float
        Initial diagonal of the confusion matrices.
    """

    def __init__(self, instance_dim, annotator_dim, hidden_size, n_classes, eta):
        super().__init__()
        self.n_classes = n_classes
        self.eta = eta
        self.hidden = nn.Linear(instance_dim + annotator_dim, hidden_size)
        self.output = nn.Linear(hidden_size, n_classes * n_classes)
        self._reset_output()

    def _reset_output(self):
        with torch.no_grad():
            self.output.weight.zero_()
            self.output.bias.copy_(eta_bias(self.n_classes, self.eta))

    def reset_parameters_(self, generator):
        """Initialise the hidden layer from ``generator`` and the output layer to the ``eta`` prior.

        Parameters
        ----------
        generator : torch.Generator
        """
        linear_init_(self.hidden.weight, self.hidden.bias, generator)
        self._reset_output()

    def logits(self, instance_embedding, annotator_embedding):
        """Unnormalised log confusion matrices, shape (P, C, C)."""
        hidden = F.relu(self.hidden(torch.cat([instance_embedding, annotator_embedding], dim=1)))
        return self.output(hidden).view(-1, self.n_classes, self.n_classes)

    def forward(self, instance_embedding, annotator_embedding):
        """Log confusion matrices, shape (P, C, C); row ``y`` is ``log P(z | x, a, y)``."""
        logits = self.logits(instance_embedding, annotator_embedding)
        # Not F.log_softmax: on the CPU it is several times slower over rows of C entries.
        return logits - torch.logsumexp(logits, dim=-1, keepdim=True)
