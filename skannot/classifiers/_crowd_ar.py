"""CrowdAR (Cao et al., SIGIR 2023): a crowd layer trained on soft labels weighted by their reliability."""

from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval
from torch import nn
from torch.nn import functional as F

from .._base import BaseCrowdClassifier
from .._nn import weighted_mean
from .._random import linear_init_
from ._crowd_layer import CrowdLayerModule


class ReliabilityNetwork(nn.Module):
    """How reliable each annotation is, from the instance, the annotator and the GT model's belief.

    With ``h(x)`` the (detached) GT embedding, ``q = p(. | x)`` and
    ``E[m]`` annotator ``m``'s learned expertise vector (size C)::

        d = sigmoid(W_2 sigmoid(W_1 h(x)))            (difficulty per class)
        r = sigmoid(w_3 . ((sigmoid(E[m]) - d) * q) + b_3)

    with the entries of ``w_3`` kept non-negative, so that more expertise
    and less difficulty never lower the reliability.

    Parameters
    ----------
    instance_dim : int
        Size D of the GT model's embedding.
    n_annotators : int
        Number of annotators M.
    n_classes : int
        Number of classes C.
    hidden_size : int, default=128
        Width of the difficulty layer.
    """

    def __init__(self, instance_dim, n_annotators, n_classes, hidden_size=128):
        super().__init__()
        self.difficulty_hidden = nn.Linear(instance_dim, hidden_size)
        self.difficulty = nn.Linear(hidden_size, n_classes)
        self.expertise = nn.Parameter(torch.empty(n_annotators, n_classes))
        self.output = nn.Linear(n_classes, 1)
        self.reset_parameters_(None)

    def reset_parameters_(self, generator):
        """Torch's default initialisation of the layers, Glorot-normal expertise, from ``generator``.

        Parameters
        ----------
        generator : torch.Generator or None
            None: torch's global generator.
        """
        for layer in (self.difficulty_hidden, self.difficulty, self.output):
            linear_init_(layer.weight, layer.bias, generator)
        nn.init.xavier_normal_(self.expertise, generator=generator)

    def project_(self):
        """Set the negative entries of ``w_3`` to 0 (the paper's constraint, applied before each step)."""
        with torch.no_grad():
            self.output.weight.clamp_(min=0)

    def forward(self, embedding, annotators, class_proba):
        """Logit of the reliability of each pair's annotation, shape (P,).

        Parameters
        ----------
        embedding : Tensor of shape (P, D)
            GT embedding of each pair's instance (detached by the caller).
        annotators : LongTensor of shape (P,)
        class_proba : Tensor of shape (P, C)
            ``p(y | x)`` of each pair's instance.
        """
        difficulty = torch.sigmoid(self.difficulty(torch.sigmoid(self.difficulty_hidden(embedding))))
        gap = (torch.sigmoid(self.expertise[annotators]) - difficulty) * class_proba
        return F.linear(gap, self.output.weight.clamp(min=0), self.output.bias)[:, 0]


class CrowdARModule(CrowdLayerModule):
    """Crowd layer (identity-initialised matrices on ``p(y | x)``) with a reliability network.

    Parameters
    ----------
    gt_model : nn.Module
        Maps x of shape (batch, ...) to ``(logits, embedding)`` of shapes
        (batch, C) and (batch, D).
    n_annotators : int
        Number of annotators M.
    instance_dim : int
        Size D of the GT model's embedding.
    n_classes : int
        Number of classes C.
    hidden_size : int, default=128
        Width of the reliability network's difficulty layer.
    annotation_weight : float, default=0.9
        The paper's lambda (see :meth:`training_loss`).
    """

    def __init__(
        self, gt_model, n_annotators, instance_dim, n_classes, hidden_size=128, annotation_weight=0.9
    ):
        super().__init__(gt_model, n_annotators, n_classes)
        self.reliability = ReliabilityNetwork(instance_dim, n_annotators, n_classes, hidden_size)
        self.annotation_weight = annotation_weight

    def pair_losses(self, logits, embedding, annotators, labels):
        """The two loss terms of each pair, before weighting and averaging.

        Parameters
        ----------
        logits : Tensor of shape (P, C)
            GT logits of each pair's instance.
        embedding : Tensor of shape (P, D)
            GT embedding of each pair's instance.
        annotators, labels : LongTensor of shape (P,)

        Returns
        -------
        annotation : Tensor of shape (P,)
            Cross-entropy of the annotator's label distribution against the
            soft target ``r e_z + (1 - r) / C``.
        reliability : Tensor of shape (P,)
            Binary cross-entropy of ``r`` against whether the GT model's
            most probable class equals the label.
        """
        log_proba = self.annotation_log_proba(logits, embedding, annotators)
        class_proba = F.softmax(logits, dim=1)
        reliability_logit = self.reliability(embedding.detach(), annotators, class_proba)
        reliability = torch.sigmoid(reliability_logit)
        own = log_proba.gather(1, labels[:, None])[:, 0]
        annotation = -(reliability * own + (1 - reliability) * log_proba.mean(1))
        agrees = (logits.argmax(1) == labels).to(reliability_logit.dtype)
        return annotation, F.binary_cross_entropy_with_logits(reliability_logit, agrees, reduction="none")

    def training_loss(self, x, rows, annotators, labels, lam=None, partner=None, weights=None):
        """CrowdAR's loss: soft-label cross-entropy and the reliability term, mixed by ``annotation_weight``.

        ``mean_p w_p [lambda * annotation_p + (1 - lambda) * reliability_p]``
        with the terms of :meth:`pair_losses` and the pairs' weights ``w_p``
        from ``sample_weight`` / ``class_weight`` (1 when ``weights`` is
        None); the reliability network's output weights are first projected
        onto the non-negative entries.
        Parameters and returns as for :meth:`CrowdModule.training_loss`.
        """
        self.reliability.project_()
        logits, embedding = self.gt_model(x)
        annotation, reliability = self.pair_losses(logits[rows].float(), embedding[rows], annotators, labels)
        weight = self.annotation_weight
        return weighted_mean(weight * annotation + (1 - weight) * reliability, weights), logits


class CrowdARClassifier(BaseCrowdClassifier):
    """Classifier trained on noisy labels from several annotators with annotation reliability.

    CrowdAR [1]_ puts a crowd layer on the GT model (one C x C matrix
    ``W_m`` per annotator, initialised to the identity; annotator ``m``'s
    label distribution is ``softmax(p @ W_m)`` with ``p = p(. | x)``) and
    adds a reliability network that estimates, for each observed label, the
    probability ``r`` that it is reliable, from the instance's (detached)
    GT embedding, a learned expertise vector of the annotator and ``p``.
    Instead of the one-hot label, the crowd layer is trained towards the
    soft target ``r e_z + (1 - r) / C``: a label judged unreliable teaches
    little. An auxiliary binary cross-entropy ties ``r`` to whether the
    label agrees with the GT model's prediction. The loss of a batch is the
    mean over its observed pairs of ``annotation_weight`` times the first
    term plus ``1 - annotation_weight`` times the second.

    Parameters
    ----------
    annotation_weight : float in [0, 1], default=0.9
        The paper's lambda, the weight of the soft-label term (the
        reliability term gets ``1 - annotation_weight``).
    reliability_hidden_size : int, default=128
        Width of the reliability network's difficulty layer.
    {shared_parameters}

    Attributes
    ----------
    {shared_attributes}
    annotator_confusion_ : ndarray of shape (n_annotators_, n_classes, n_classes)
        The confusion matrix the crowd layer implies, as for
        :class:`~skannot.CrowdLayerClassifier`: entry ``[m, y, z]`` is
        ``softmax(W_m[y])[z]``, the probability that annotator ``m`` says
        ``classes_[z]`` for an instance the GT model is certain is of class
        ``classes_[y]``. An annotator without labels is modelled as the
        average annotator (the mean of the learned matrices). Rows sum to 1.
    annotator_accuracy_ : ndarray of shape (n_annotators_,)
        Estimated fraction of each annotator's training labels that are
        correct: the mean ``support`` of its labels (see
        :meth:`label_quality`), the probability of the label's class given
        the item's other labels, so that a label does not vouch for itself.
        (The reliability network's ``r`` is a training device here; it does
        not enter the summaries.)

    Notes
    -----
    The defaults follow the annot-mix authors' implementation of CrowdAR:
    lambda 0.9, a difficulty layer of 128 units, Glorot-normal initial
    expertise vectors, and the reliability network reading the GT
    embedding detached from the GT model (which still learns from the
    reliability term through ``p``).

    Differences from the paper: the non-negativity of the reliability
    network's output weights is enforced by projecting them before each
    training step (the paper's code clips them after each step; the two
    differ only in the initial weights, clipped before the first step
    here) and by reading them clipped at 0; the GT model and training
    settings are the family's shared defaults (an MLP trained with RAdam
    and a cosine learning-rate schedule, as in the annot-mix paper's
    comparison).

    References
    ----------
    .. [1] Z. Cao, E. Chen, Y. Huang, S. Shen and Z. Huang, "Learning from
       Crowds with Annotation Reliability", SIGIR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot import CrowdARClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> Z = np.where(rng.random((200, 3)) < 0.8, y[:, None], 1 - y[:, None])
    >>> Z[rng.random((200, 3)) < 0.3] = -1  # missing annotations
    >>> clf = CrowdARClassifier(max_epochs=5, random_state=0).fit(X, Z)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.annotator_confusion_.shape
    (3, 2, 2)
    """

    _parameter_constraints = {
        **BaseCrowdClassifier._parameter_constraints,
        "annotation_weight": [Interval(Real, 0, 1, closed="both")],
        "reliability_hidden_size": [Interval(Integral, 1, None, closed="left")],
    }
    _method_name = "CrowdAR"

    def __init__(self, module=None, *, annotation_weight=0.9, reliability_hidden_size=128, **kwargs):
        super().__init__(module, **kwargs)
        self.annotation_weight = annotation_weight
        self.reliability_hidden_size = reliability_hidden_size

    def _build_crowd_module(self, gt_model, n_features, instance_dim, n_classes, n_annotators):
        return CrowdARModule(
            gt_model,
            n_annotators=n_annotators,
            instance_dim=instance_dim,
            n_classes=n_classes,
            hidden_size=self.reliability_hidden_size,
            annotation_weight=self.annotation_weight,
        )

    def _net_options(self, module):
        # A warm start trains the fitted module on: the current weight applies.
        module.annotation_weight = self.annotation_weight
        return {}
