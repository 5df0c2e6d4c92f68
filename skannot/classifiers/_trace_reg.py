"""Trace regularisation (Tanno et al., CVPR 2019): per-annotator confusion matrices with a small trace."""

from __future__ import annotations

from numbers import Real

import torch
from sklearn.utils._param_validation import Interval

from .._base import BaseCrowdClassifier
from .._nn import ConfusionTableModule


class TraceRegModule(ConfusionTableModule):
    """GT model and per-annotator confusion matrices, with the mean trace as regulariser.

    Annotator ``m``'s confusion matrix is the row-softmax of its logits,
    which start at ``6 I - 5``; ``P(z | x, m) = sum_y p(y | x) A_m[y, z]``
    (the base class's ``annotation_log_proba``).

    Parameters
    ----------
    gt_model : nn.Module
        Maps x of shape (batch, ...) to ``(logits, embedding)`` of shapes
        (batch, C) and (batch, D).
    n_annotators : int
        Number of annotators M.
    n_classes : int
        Number of classes C.
    reg_lambda : float, default=0.01
        Weight of the regulariser.
    """

    def __init__(self, gt_model, n_annotators, n_classes, reg_lambda=0.01):
        super().__init__(gt_model, n_annotators, 6 * torch.eye(n_classes) - 5)
        self.reg_lambda = reg_lambda

    def penalty(self, logits, annotators):
        """``reg_lambda`` times the mean trace of all M confusion matrices; arguments as in the base class."""
        traces = torch.diagonal(self.confusion.confusion(), dim1=1, dim2=2).sum(1)
        return self.reg_lambda * traces.mean()


class TraceRegClassifier(BaseCrowdClassifier):
    """Classifier trained on noisy labels from several annotators with trace-regularised confusion matrices.

    The method of Tanno et al. [1]_ learns a ground-truth (GT) model
    ``p(y | x)`` jointly with one confusion matrix ``A_m`` per annotator
    (row ``y``: the distribution of the annotator's label when the truth
    is ``y``, the same for every instance). The likelihood of an observed
    label is ``P(z | x, m) = sum_y p(y | x) A_m[y, z]``; the loss of a
    batch is the mean negative log-likelihood of its observed
    (instance, annotator) pairs plus ``reg_lambda`` times the mean trace
    of the annotators' confusion matrices. Keeping the traces small
    pushes the confusion matrices to explain as much of the label noise
    as they can, so that the GT model does not absorb it; the paper shows
    that this recovers the true matrices when the annotators' mean
    confusion matrix is diagonally dominant.

    Parameters
    ----------
    reg_lambda : float >= 0, default=0.01
        Weight of the trace regulariser (the paper's lambda); 0 gives the
        unregularised maximum-likelihood estimate.
    {shared_parameters}

    Attributes
    ----------
    {shared_attributes}
    annotator_confusion_ : ndarray of shape (n_annotators_, n_classes, n_classes)
        The learned confusion matrices ``A_m``: entry ``[m, y, z]`` is the
        probability that annotator ``m`` says ``classes_[z]`` when the truth
        is ``classes_[y]``, for any instance. (The family's summary, the
        average of ``P(z | x, m, y)`` over the annotator's labelled
        instances weighted by ``p(y | x)``, is the matrix itself since it
        does not depend on ``x``.) An annotator without labels is modelled
        as the average annotator (the mean of the learned logits). Rows sum
        to 1.
    {class_level_accuracy}

    Notes
    -----
    The confusion logits start at ``6 I - 5`` (the initialisation of the
    paper's code), so that every matrix starts close to the identity (its
    diagonal is ``e / (e + (C - 1) e^-5)``, 0.98 for 10 classes). The
    regulariser is the mean trace over all annotators, whether or not
    they label in the batch, as in the paper's code.

    Differences from the paper: the rows are normalised with a softmax
    (the paper's code uses a softplus followed by a division by the row
    sum), following the annot-mix paper's implementation of the method;
    the GT model and training settings are the family's shared defaults
    (an MLP trained with RAdam and a cosine learning-rate schedule, as in
    the annot-mix paper's comparison).

    References
    ----------
    .. [1] R. Tanno, A. Saeedi, S. Sankaranarayanan, D. C. Alexander and
       N. Silberman, "Learning From Noisy Labels By Regularized Estimation
       Of Annotator Confusion", CVPR 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot import TraceRegClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> Z = np.where(rng.random((200, 3)) < 0.8, y[:, None], 1 - y[:, None])
    >>> Z[rng.random((200, 3)) < 0.3] = -1  # missing annotations
    >>> clf = TraceRegClassifier(max_epochs=5, random_state=0).fit(X, Z)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.annotator_confusion_.shape
    (3, 2, 2)
    """

    _parameter_constraints = {
        **BaseCrowdClassifier._parameter_constraints,
        "reg_lambda": [Interval(Real, 0, None, closed="left")],
    }
    _method_name = "trace-reg"

    def __init__(self, module=None, *, reg_lambda=0.01, **kwargs):
        super().__init__(module, **kwargs)
        self.reg_lambda = reg_lambda

    def _build_crowd_module(self, gt_model, n_features, instance_dim, n_classes, n_annotators):
        return TraceRegModule(
            gt_model, n_annotators=n_annotators, n_classes=n_classes, reg_lambda=self.reg_lambda
        )

    def _net_options(self, module):
        # A warm start trains the fitted module on: the current weight applies.
        module.reg_lambda = self.reg_lambda
        return {}
