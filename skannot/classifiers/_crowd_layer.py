"""Crowd layer (Rodrigues & Pereira, AAAI 2018), "MW" variant: a learned matrix per annotator on p(y | x)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .._base import BaseCrowdClassifier
from .._nn import ConfusionTableModule, weighted_mean


class CrowdLayerModule(ConfusionTableModule):
    """GT model followed by a crowd layer: one C x C matrix per annotator, initialised to the identity.

    With ``p = softmax(logits)`` the GT class probabilities of an instance
    and ``W[m]`` annotator ``m``'s matrix (``weight[m, y, z]`` of the
    :class:`~skannot._nn.ConfusionTable`), the annotator's label
    distribution is ``softmax(p @ W[m])``: ``W[m]`` is the transpose of the
    paper's ``W^r`` in ``softmax(W^r sigma)``. ``log_confusion`` is the
    confusion this layer implies for an instance of certain class ``y``,
    ``log_softmax(e_y @ W[m]) = log_softmax(W[m][y])``.

    Parameters
    ----------
    gt_model : nn.Module
        Maps x of shape (batch, ...) to ``(logits, embedding)`` of shapes
        (batch, C) and (batch, D).
    n_annotators : int
        Number of annotators M.
    n_classes : int
        Number of classes C.
    """

    def __init__(self, gt_model, n_annotators, n_classes):
        super().__init__(gt_model, n_annotators, torch.eye(n_classes))

    def annotation_log_proba(self, logits, embedding, annotators):
        """``log softmax(p @ W[a])`` of each pair, shape (P, C); arguments as for the base class."""
        class_proba = F.softmax(logits, dim=1)
        # A product and a sum rather than bmm, which bfloat16 autocast would run in low precision.
        annotation_logits = (class_proba[:, :, None] * self.confusion(annotators)).sum(1)
        return annotation_logits - torch.logsumexp(annotation_logits, dim=1, keepdim=True)

    def training_loss(self, x, rows, annotators, labels, lam=None, partner=None, weights=None):
        """Cross-entropy of the observed labels under ``softmax(p @ W[a])``.

        The same loss as the base class's from :meth:`annotation_log_proba`.
        With fewer annotators than pairs in the batch, ``p @ W[m]`` is
        computed for every instance and annotator in one matrix product
        (B x C times C x M C) and the pairs' rows are gathered from it, which
        costs less than gathering a C x C matrix per pair and its backward
        scatter; otherwise per pair.
        """
        weight = self.confusion.weight
        n_annotators, n_classes = weight.shape[0], weight.shape[1]
        if n_annotators >= len(rows):
            return super().training_loss(x, rows, annotators, labels, weights=weights)
        logits = self.gt_model(x)[0]
        class_proba = F.softmax(logits.float(), dim=1)  # (B, C)
        table = weight.permute(1, 0, 2).reshape(n_classes, n_annotators * n_classes)
        every = (class_proba @ table).view(len(x), n_annotators, n_classes)  # p @ W[m] for all (i, m)
        if weights is None:
            return F.cross_entropy(every[rows, annotators], labels), logits
        losses = F.cross_entropy(every[rows, annotators], labels, reduction="none")
        return weighted_mean(losses, weights), logits


class CrowdLayerClassifier(BaseCrowdClassifier):
    """Classifier trained on noisy labels from several annotators with a crowd layer.

    The crowd layer [1]_ ("MW" variant) puts one learned C x C matrix
    ``W_m`` per annotator on top of the GT model's class probabilities
    ``p = p(. | x)``: annotator ``m``'s label distribution is
    ``softmax(W_m p)``, and the GT model and the matrices are trained
    together by minimising the cross-entropy of the observed labels (the
    mean over observed (instance, annotator) pairs of ``-log P(z | x, m)``).
    Every ``W_m`` starts as the identity, so that at first each annotator
    is modelled as reporting the GT model's belief (softened by the
    softmax). The method has no parameters of its own.

    Parameters
    ----------
    {shared_parameters}

    Attributes
    ----------
    {shared_attributes}
    annotator_confusion_ : ndarray of shape (n_annotators_, n_classes, n_classes)
        The confusion matrix the crowd layer implies: entry ``[m, y, z]`` is
        the probability that annotator ``m`` says ``classes_[z]`` for an
        instance that the GT model is certain is of class ``classes_[y]``,
        ``softmax(W_m e_y)[z]``. It does not depend on the instance, so the
        average over the annotator's labelled instances is the matrix
        itself. For an uncertain ``p`` the layer's ``softmax(W_m p)`` is not
        the mixture ``sum_y p_y softmax(W_m e_y)`` of these rows, so
        :meth:`predict_annotator_proba` can differ from what this matrix and
        :meth:`predict_proba` would give. An annotator without labels is
        modelled as the average annotator (the mean of the learned
        matrices ``W_m``). Rows sum to 1.
    {class_level_accuracy}

    Notes
    -----
    Differences from the paper: the GT model and training settings are the
    family's shared defaults (an MLP trained with RAdam and a cosine
    learning-rate schedule, as in the annot-mix paper's comparison), and
    only the "MW" variant is offered (the paper's "VW", "VB" and "VW+B"
    variants replace the matrix with a vector scale and/or bias).

    References
    ----------
    .. [1] F. Rodrigues and F. Pereira, "Deep Learning from Crowds",
       AAAI 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot import CrowdLayerClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> Z = np.where(rng.random((200, 3)) < 0.8, y[:, None], 1 - y[:, None])
    >>> Z[rng.random((200, 3)) < 0.3] = -1  # missing annotations
    >>> clf = CrowdLayerClassifier(max_epochs=5, random_state=0).fit(X, Z)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.annotator_confusion_.shape
    (3, 2, 2)
    """

    _method_name = "the crowd layer"

    def __init__(self, module=None, **kwargs):
        super().__init__(module, **kwargs)

    def _build_crowd_module(self, gt_model, n_features, instance_dim, n_classes, n_annotators):
        return CrowdLayerModule(gt_model, n_annotators=n_annotators, n_classes=n_classes)
