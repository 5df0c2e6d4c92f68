"""GeoCrowdNet (Ibrahim, Nguyen & Fu, ICLR 2023): coupled cross-entropy with a log-determinant regulariser."""

from __future__ import annotations

from numbers import Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch.nn import functional as F

from .._base import BaseCrowdClassifier
from .._nn import ConfusionTableModule


def neg_log_det(gram):
    """``-log det(gram)`` of a symmetric positive semi-definite matrix, or 0 where that is not finite.

    Computed from a Cholesky factorisation. Where it fails (``gram`` is
    singular in floating point, so ``-log det`` is +inf or undefined), the
    result is 0 with a zero gradient; no device synchronisation is needed to
    decide.

    Parameters
    ----------
    gram : Tensor of shape (C, C)

    Returns
    -------
    value : scalar Tensor
    """
    _, info = torch.linalg.cholesky_ex(gram)
    usable = info == 0
    # Factorise the identity in place of an unusable matrix, so that no inf or NaN reaches the gradient.
    eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
    factor, _ = torch.linalg.cholesky_ex(torch.where(usable, gram, eye))
    value = -2 * torch.log(torch.diagonal(factor)).sum()
    return torch.where(usable, value, torch.zeros_like(value))


class GeoCrowdNetModule(ConfusionTableModule):
    """GT model and per-annotator confusion matrices, with GeoCrowdNet's log-determinant regulariser.

    Annotator ``m``'s confusion matrix ``A_m`` is the row-softmax of its
    logits, which start at the identity; ``P(z | x, m) = sum_y p(y | x)
    A_m[y, z]`` (the base class's ``annotation_log_proba``).

    Parameters
    ----------
    gt_model : nn.Module
        Maps x of shape (batch, ...) to ``(logits, embedding)`` of shapes
        (batch, C) and (batch, D).
    n_annotators : int
        Number of annotators M.
    n_classes : int
        Number of classes C.
    regularization : {"F", "W"}, default="F"
        ``"F"``: ``-log det(F^T F)`` of the batch's (B, C) matrix ``F`` of
        class probabilities ``p(y | x)``. ``"W"``: ``-log det(W^T W)`` of the
        (M C, C) matrix ``W`` stacking the confusion matrices, whose column
        ``y`` holds every annotator's row ``y``.
    reg_lambda : float, default=1e-3
        Weight of the regulariser; a batch where its log-determinant is not
        finite adds 0 (see :func:`neg_log_det`).
    """

    def __init__(self, gt_model, n_annotators, n_classes, regularization="F", reg_lambda=1e-3):
        super().__init__(gt_model, n_annotators, torch.eye(n_classes))
        self.regularization = regularization
        self.reg_lambda = reg_lambda

    def penalty(self, logits, annotators):
        """``reg_lambda`` times the chosen ``-log det`` term; arguments as for the base class."""
        # In float32 under mixed precision too: bfloat16 autocast would run the products in low
        # precision, and CUDA has no bfloat16 Cholesky factorisation.
        with torch.autocast(logits.device.type, enabled=False):
            if self.regularization == "F":
                class_proba = F.softmax(logits.float(), dim=1)
                gram = class_proba.T @ class_proba
            else:
                confusion = self.confusion.confusion()
                gram = torch.einsum("myz,mwz->yw", confusion, confusion)
            return self.reg_lambda * neg_log_det(gram)


class GeoCrowdNetClassifier(BaseCrowdClassifier):
    """Classifier trained on noisy labels from several annotators with GeoCrowdNet.

    GeoCrowdNet [1]_ learns a ground-truth (GT) model ``p(y | x)`` jointly
    with one confusion matrix ``A_m`` per annotator (row ``y``: the
    distribution of the annotator's label when the truth is ``y``, the
    same for every instance) by minimising the coupled cross-entropy, the
    mean over observed (instance, annotator) pairs of ``-log sum_y p(y |
    x) A_m[y, z]``, plus a log-determinant regulariser that favours the
    identifiable solution: ``"F"`` spreads the GT model's class
    probabilities (the volume of the batch's probability matrix ``F``),
    ``"W"`` spreads the stacked confusion matrices ``W``.

    Parameters
    ----------
    regularization : {"F", "W"}, default="F"
        ``"F"``: add ``-reg_lambda log det(F^T F)``, with ``F`` the (B, C)
        matrix of ``p(y | x)`` of the batch's B instances (GeoCrowdNet (F)).
        ``"W"``: add ``-reg_lambda log det(W^T W)``, with ``W`` the
        (n_annotators x C, C) matrix stacking all annotators' confusion
        matrices (column ``y`` holds every annotator's row ``y``)
        (GeoCrowdNet (W)).
    reg_lambda : float >= 0, default=1e-3
        Weight of the regulariser (the paper's lambda). A batch where the
        log-determinant is not finite (``F^T F`` or ``W^T W`` singular in
        floating point, e.g. a batch whose probabilities span fewer than C
        directions) adds 0, as in the paper's code.
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
    The confusion logits start at the identity matrix and are
    row-softmaxed, as in the annot-mix paper's implementation of the
    method, so every matrix starts with ``e / (e + C - 1)`` on its diagonal
    (0.23 for 10 classes) and ``1 / (e + C - 1)`` elsewhere.

    Differences from the paper: the regularised log-determinant is
    computed from a Cholesky factorisation, and a batch is skipped where
    that factorisation fails rather than where ``torch.logdet`` returns a
    value that is not finite (the paper's code also skips values above
    100, which we do not); the GT model and training settings are the
    family's shared defaults (an MLP trained with RAdam and a cosine
    learning-rate schedule, as in the annot-mix paper's comparison).

    References
    ----------
    .. [1] S. Ibrahim, T. Nguyen and X. Fu, "Deep Learning From Crowdsourced
       Labels: Coupled Cross-Entropy Minimization, Identifiability, and
       Regularization", ICLR 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot import GeoCrowdNetClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> Z = np.where(rng.random((200, 3)) < 0.8, y[:, None], 1 - y[:, None])
    >>> Z[rng.random((200, 3)) < 0.3] = -1  # missing annotations
    >>> clf = GeoCrowdNetClassifier(regularization="W", max_epochs=5, random_state=0).fit(X, Z)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.annotator_confusion_.shape
    (3, 2, 2)
    """

    _parameter_constraints = {
        **BaseCrowdClassifier._parameter_constraints,
        "regularization": [StrOptions({"F", "W"})],
        "reg_lambda": [Interval(Real, 0, None, closed="left")],
    }
    _method_name = "GeoCrowdNet"

    def __init__(self, module=None, *, regularization="F", reg_lambda=1e-3, **kwargs):
        super().__init__(module, **kwargs)
        self.regularization = regularization
        self.reg_lambda = reg_lambda

    def _check_method_params(self, n_classes):
        if self.regularization == "F" and self.reg_lambda > 0 and self.batch_size < n_classes:
            raise ValueError(
                f"regularization='F' needs batch_size >= n_classes, but batch_size={self.batch_size} < "
                f"{n_classes} classes: F^T F of a batch of B instances has rank at most B, so its "
                "log-determinant would never be finite. Raise batch_size, or use regularization='W'."
            )

    def _build_crowd_module(self, gt_model, n_features, instance_dim, n_classes, n_annotators):
        return GeoCrowdNetModule(
            gt_model,
            n_annotators=n_annotators,
            n_classes=n_classes,
            regularization=self.regularization,
            reg_lambda=self.reg_lambda,
        )

    def _net_options(self, module):
        # A warm start trains the fitted module on: the current regulariser applies.
        module.regularization = self.regularization
        module.reg_lambda = self.reg_lambda
        return {}
