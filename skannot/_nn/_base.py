"""The torch side of every estimator of the family: a GT model joined with an annotator model."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ._heads import ConfusionTable


def weighted_mean(losses, weights=None):
    """Mean of the per-pair ``losses`` (P,), each scaled by its weight when ``weights`` (P,) is given.

    The pair weights the net passes are normalised to mean 1 over the
    training labels (see :class:`~skannot._training.CrowdDataset`), so the
    weighted mean keeps the scale of the plain one, and all-one weights give
    the plain mean exactly.
    """
    return losses.mean() if weights is None else (losses * weights).mean()


class CrowdModule(nn.Module):
    """A ground-truth (GT) model and an annotator model in one module.

    Every method of the family subclasses it in its own file and defines
    :meth:`log_confusion` (its annotator model); methods whose annotation
    model is not a confusion matrix applied to ``p(y | x)`` also override
    :meth:`annotation_log_proba`, and methods with a regulariser or another
    loss override :meth:`penalty` or :meth:`training_loss`. The estimators'
    shared machinery (training, prediction, annotator summaries) needs only
    these methods.

    Parameters
    ----------
    gt_model : nn.Module
        Maps x of shape (batch, ...) to ``(logits, embedding)`` of shapes
        (batch, C) and (batch, D).
    """

    #: Whether :meth:`training_loss` takes mixing weights (mixup); the net draws them only then.
    supports_mixup = False

    def __init__(self, gt_model):
        super().__init__()
        self.gt_model = gt_model

    def forward(self, x):
        """Class logits of shape (batch, C); what skorch calls for inference."""
        return self.gt_model(x)[0]

    def log_confusion(self, embedding, annotators):
        """``log P(z | x, a, y)`` of each pair, normalised over ``z``.

        Parameters
        ----------
        embedding : Tensor of shape (P, D)
            GT-model embedding of each pair's instance.
        annotators : LongTensor of shape (P,)
            Annotator of each pair.

        Returns
        -------
        log_confusion : Tensor of shape (P, C, C)
            Row ``y``, column ``z``.
        """
        raise NotImplementedError

    def annotation_log_proba(self, logits, embedding, annotators):
        """``log P(z | x, a)`` of each pair for every class ``z``.

        ``logsumexp_y [log p(y | x) + log P(z | x, a, y)]`` by default.

        Parameters
        ----------
        logits : Tensor of shape (P, C)
            GT logits of each pair's instance.
        embedding : Tensor of shape (P, D)
            GT-model embedding of each pair's instance.
        annotators : LongTensor of shape (P,)

        Returns
        -------
        log_proba : Tensor of shape (P, C)
        """
        log_class_proba = F.log_softmax(logits, dim=1)
        return torch.logsumexp(log_class_proba[:, :, None] + self.log_confusion(embedding, annotators), 1)

    def annotator_log_proba(self, x, annotators):
        """``log P(z | x, a)`` for every pair of a row of ``x`` and an annotator.

        Parameters
        ----------
        x : Tensor of shape (B, ...)
            Instances.
        annotators : LongTensor of shape (A,)
            Annotator indices.

        Returns
        -------
        log_proba : Tensor of shape (B, A, C)
        log_class_proba : Tensor of shape (B, C)
            ``log p(y | x)``.
        """
        logits, embedding = self.gt_model(x)
        logits = logits.float()
        n, m, n_classes = len(x), len(annotators), logits.shape[1]
        log_proba = self.annotation_log_proba(
            logits.repeat_interleave(m, dim=0), embedding.repeat_interleave(m, dim=0), annotators.repeat(n)
        )
        return log_proba.view(n, m, n_classes), F.log_softmax(logits, dim=1)

    def penalty(self, logits, annotators):
        """The method's regulariser on a batch, added to the mean negative log-likelihood (0 here).

        Parameters
        ----------
        logits : Tensor of shape (B, C)
            GT logits of the batch's instances.
        annotators : LongTensor of shape (P,)
            Annotators of the batch's pairs.

        Returns
        -------
        penalty : scalar Tensor or float
        """
        return 0.0

    def training_loss(self, x, rows, annotators, labels, lam=None, partner=None, weights=None):
        """The loss of one batch: the pairs' (weighted) mean negative log-likelihood plus :meth:`penalty`.

        A method that overrides this must honour ``weights``: scale each
        pair's loss by its weight before averaging over the pairs
        (:func:`weighted_mean`), and leave the penalty unweighted.

        Parameters
        ----------
        x : Tensor of shape (B, ...)
            The batch's instances.
        rows : LongTensor of shape (P,)
            Position in ``x`` of each observed pair's instance.
        annotators, labels : LongTensor of shape (P,)
            Annotator and class index of each pair's label.
        lam, partner : Tensor of shape (P,), optional
            Mixing weights and partner positions; only methods with
            ``supports_mixup`` receive them.
        weights : Tensor of shape (P,), optional
            Weight of each pair's loss, from ``sample_weight`` and
            ``class_weight``, normalised to mean 1 over the training labels;
            for a mixed pair, ``lam * w + (1 - lam) * w[partner]``. None
            when the fit has no weights.

        Returns
        -------
        loss : scalar Tensor
        logits : Tensor of shape (B, C)
            The GT logits of the batch (skorch records them as ``y_pred``).
        """
        logits, embedding = self.gt_model(x)
        log_proba = self.annotation_log_proba(logits[rows].float(), embedding[rows], annotators)
        if weights is None:
            nll = -log_proba.gather(1, labels[:, None]).mean()
        else:
            nll = weighted_mean(-log_proba.gather(1, labels[:, None])[:, 0], weights)
        return nll + self.penalty(logits.float(), annotators), logits

    def mark_labelled_annotators(self, labelled):
        """Note which annotators have training labels (after ``fit``); nothing by default.

        Models with a learned annotator representation use it to predict an
        annotator without labels as the average annotator.

        Parameters
        ----------
        labelled : BoolTensor of shape (n_annotators,)
        """


class ConfusionTableModule(CrowdModule):
    """A GT model and one confusion table per annotator: the class-dependent methods' common part.

    ``log_confusion`` is the row-softmax of the annotator's table, whatever
    the instance; each method sets the table's initialisation and adds its
    likelihood or regulariser in its own subclass.

    Parameters
    ----------
    gt_model : nn.Module
        Maps x of shape (batch, ...) to ``(logits, embedding)`` of shapes
        (batch, C) and (batch, D).
    n_annotators : int
        Number of annotators M.
    init : Tensor of shape (C, C)
        Initial confusion logits of every annotator (see
        :class:`~skannot._nn.ConfusionTable`).
    """

    def __init__(self, gt_model, n_annotators, init):
        super().__init__(gt_model)
        self.confusion = ConfusionTable(n_annotators, init)

    def log_confusion(self, embedding, annotators):
        return self.confusion.log_confusion(annotators)

    def mark_labelled_annotators(self, labelled):
        self.confusion.mark_labelled(labelled)
