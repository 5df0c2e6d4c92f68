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


class ConfusionTable(nn.Module):
    """A learned C x C table of confusion logits per annotator, the same for every instance.

    ``weight[m, y, z]`` is the unnormalised log-probability that annotator
    ``m`` says class ``z`` when the true class is ``y``; the class-dependent
    methods (crowd layer, trace-reg, GeoCrowdNet, UnionNet) differ in its
    initialisation and in how they turn it into label probabilities.

    In evaluation mode, after :meth:`mark_labelled`, annotators without
    training labels read the mean row of the labelled annotators (the average
    annotator), without any parameter being overwritten; in training mode
    every annotator reads its own row.

    Parameters
    ----------
    n_annotators : int
        Number of annotators M.
    init : Tensor of shape (C, C)
        Initial logits of every annotator.
    """

    def __init__(self, n_annotators, init):
        super().__init__()
        self.weight = nn.Parameter(init.detach().to(torch.float32).repeat(n_annotators, 1, 1))
        self.register_buffer("labelled", torch.ones(n_annotators, dtype=torch.bool))

    def mark_labelled(self, labelled):
        """Note which annotators have training labels (a BoolTensor of shape (M,))."""
        self.labelled.copy_(labelled)

    def forward(self, annotators):
        """Confusion logits of ``annotators`` (P,), shape (P, C, C); row ``y``, column ``z``."""
        rows = self.weight[annotators]
        if not self.training and not bool(self.labelled.all()):
            mean = self.weight[self.labelled].mean(0)
            rows = torch.where(self.labelled[annotators, None, None], rows, mean)
        return rows

    def log_confusion(self, annotators):
        """Row-normalised ``log P(z | a, y)`` of ``annotators`` (P,), shape (P, C, C)."""
        logits = self(annotators)
        return logits - torch.logsumexp(logits, dim=-1, keepdim=True)

    def confusion(self):
        """The row-stochastic confusion matrices of all annotators, shape (M, C, C)."""
        return torch.softmax(self.weight, dim=-1)
