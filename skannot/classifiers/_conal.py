"""CoNAL (Chu, Ma & Wang, AAAI 2021): a common confusion matrix and one per annotator, mixed per instance."""

from __future__ import annotations

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval
from torch import nn
from torch.nn import functional as F

from .._base import BaseCrowdClassifier
from .._nn import AnnotatorEmbedding, ConfusionTable, CrowdModule


class CoNALModule(CrowdModule):
    """GT model, common and individual noise adaptation layers, and the embeddings that mix them.

    With ``p = softmax(logits)`` the GT class probabilities of instance
    ``x``, ``W_c`` the common matrix and ``W_m`` annotator ``m``'s (both
    C x C, row ``y``, column ``z``)::

        u = normalise(U h(x)),  v_m = normalise(V[m]),  omega = sigmoid(<u, v_m>)
        P(z | x, m) = softmax(omega p @ W_c + (1 - omega) p @ W_m)[z]

    with ``h(x)`` the GT model's embedding (not detached: the GT model
    learns from the mixing weight too), ``U`` a linear map and ``V`` the
    annotator embedding table (:class:`~skannot._nn.AnnotatorEmbedding`).
    ``log_confusion`` is the confusion this layer implies for an instance of
    certain class ``y``: ``log_softmax(omega W_c[y] + (1 - omega) W_m[y])``.

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
    embed_dim : int, default=20
        Size of the instance and annotator embeddings ``u`` and ``v``.
    reg_lambda : float, default=1e-5
        Weight of the regulariser (see :meth:`penalty`).
    """

    def __init__(self, gt_model, n_annotators, instance_dim, n_classes, embed_dim=20, reg_lambda=1e-5):
        super().__init__(gt_model)
        self.individual = ConfusionTable(n_annotators, 2 * torch.eye(n_classes))
        self.common = nn.Parameter(2 * torch.eye(n_classes))
        self.instance_projection = nn.Linear(instance_dim, embed_dim)
        self.annotator_embedding = AnnotatorEmbedding(n_annotators, embed_dim)
        self.reg_lambda = reg_lambda

    def mark_labelled_annotators(self, labelled):
        self.individual.mark_labelled(labelled)
        self.annotator_embedding.mark_labelled(labelled)

    def common_weight(self, embedding, annotators):
        """``omega = sigmoid(<u, v_m>)`` of each pair, shape (P,).

        Parameters
        ----------
        embedding : Tensor of shape (P, D)
            GT-model embedding of each pair's instance.
        annotators : LongTensor of shape (P,)
        """
        u = F.normalize(self.instance_projection(embedding), dim=1)
        v = F.normalize(self.annotator_embedding(annotators), dim=1)
        return torch.sigmoid((u * v).sum(1))

    def _mixed_tables(self, embedding, annotators):
        """``omega W_c + (1 - omega) W_m`` of each pair, shape (P, C, C)."""
        omega = self.common_weight(embedding, annotators).float()[:, None, None]
        return omega * self.common + (1 - omega) * self.individual(annotators)

    def log_confusion(self, embedding, annotators):
        tables = self._mixed_tables(embedding, annotators)
        return tables - torch.logsumexp(tables, dim=-1, keepdim=True)

    def annotation_log_proba(self, logits, embedding, annotators):
        """``log softmax(p @ (omega W_c + (1 - omega) W_m))`` of each pair, shape (P, C).

        Arguments as for :meth:`CrowdModule.annotation_log_proba`.
        """
        class_proba = F.softmax(logits, dim=1)
        # A product and a sum rather than bmm, which bfloat16 autocast would run in low precision.
        annotation_logits = (class_proba[:, :, None] * self._mixed_tables(embedding, annotators)).sum(1)
        return annotation_logits - torch.logsumexp(annotation_logits, dim=1, keepdim=True)

    def penalty(self, logits, annotators):
        """``-reg_lambda`` times the sum over all M annotators of ``||W_m - W_c||_F``.

        The sign of the paper's code: the regulariser rewards individual
        matrices that differ from the common one (see the estimator's Notes).
        Arguments as for :meth:`CrowdModule.penalty`.
        """
        if self.reg_lambda == 0:
            return 0.0
        distance = (self.individual.weight - self.common).flatten(1).norm(dim=1)
        return -self.reg_lambda * distance.sum()


class CoNALClassifier(BaseCrowdClassifier):
    """Classifier trained on noisy labels from several annotators with common noise adaptation layers.

    CoNAL [1]_ models two kinds of label noise: confusions that all
    annotators share (one common C x C matrix ``W_c``) and each annotator's
    own (a matrix ``W_m`` per annotator), both applied to the GT model's
    class probabilities ``p = p(. | x)`` as in the crowd layer. How much of
    annotator ``m``'s label on instance ``x`` follows the common confusions
    is ``omega = sigmoid(<u(x), v_m>)``, from an instance embedding ``u`` (a
    linear map of the GT model's last hidden layer) and an annotator
    embedding ``v_m``, both L2-normalised::

        P(z | x, m) = softmax(omega p @ W_c + (1 - omega) p @ W_m)[z]

    The GT model, the matrices and the embeddings are trained together on
    the mean cross-entropy of the observed (instance, annotator) labels,
    minus ``reg_lambda`` times the sum over annotators of the Frobenius
    distance ``||W_m - W_c||``.

    Parameters
    ----------
    embed_dim : int, default=20
        Size of the instance and annotator embeddings ``u`` and ``v`` (20, as
        in the MaDL paper's experiments with CoNAL).
    reg_lambda : float >= 0, default=1e-5
        Weight of the regulariser on the distances between the annotators'
        matrices and the common one; 0 turns it off.
    {shared_parameters}

    Attributes
    ----------
    {shared_attributes}
    annotator_confusion_ : ndarray of shape (n_annotators_, n_classes, n_classes)
        Entry ``[m, y, z]``: the probability that annotator ``m`` says
        ``classes_[z]`` for an instance the GT model is certain is of class
        ``classes_[y]``, ``softmax(omega W_c[y] + (1 - omega) W_m[y])[z]``,
        averaged over the training instances ``m`` labelled with weights
        ``p(y | x)`` (``omega`` depends on the instance). As for the crowd
        layer, :meth:`predict_annotator_proba` gives the layer's own
        ``softmax(p @ ...)``, which for an uncertain ``p`` is not the mixture
        of these rows. An annotator without labels is modelled as the
        average annotator (the mean of the learned ``W_m`` and annotator
        embeddings). Rows sum to 1.
    annotator_accuracy_ : ndarray of shape (n_annotators_,)
        Estimated fraction of each annotator's training labels that are
        correct: the mean ``support`` of its labels (see
        :meth:`label_quality`), the probability of the label's class given
        the item's other labels, so that a label does not vouch for itself.

    Notes
    -----
    All matrices start at ``2 I`` (the initialisation of the paper's code),
    so that at first every annotator reports a sharpened version of the GT
    model's belief.

    The regulariser's sign follows the paper's code (Chu's repository, and
    the annot-mix paper's implementation of CoNAL): the loss *subtracts*
    ``reg_lambda * sum_m ||W_m - W_c||``, pushing the individual matrices
    away from the common one so that the two kinds of layers model
    different confusions; the paper's text writes it as a penalty. With the
    default weight of ``1e-5`` it changes the loss very little.

    Differences from the paper: the instance embedding ``u`` is a linear map
    of the GT model's embedding (the paper's code runs a second copy of the
    GT backbone on the raw instance; the annot-mix paper's code uses the GT
    embedding, as here); the annotator embedding is a learned table plus a
    shared bias, initialised as a linear layer on one-hot annotator vectors
    (what the paper's code computes); the GT model and training settings
    are the family's shared defaults (an MLP trained with RAdam and a
    cosine learning-rate schedule, as in the annot-mix paper's comparison).

    References
    ----------
    .. [1] Z. Chu, J. Ma and H. Wang, "Learning from Crowds by Modeling
       Common Confusions", AAAI 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot import CoNALClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> Z = np.where(rng.random((200, 3)) < 0.8, y[:, None], 1 - y[:, None])
    >>> Z[rng.random((200, 3)) < 0.3] = -1  # missing annotations
    >>> clf = CoNALClassifier(max_epochs=5, random_state=0).fit(X, Z)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.annotator_confusion_.shape
    (3, 2, 2)
    """

    _parameter_constraints = {
        **BaseCrowdClassifier._parameter_constraints,
        "embed_dim": [Interval(Integral, 1, None, closed="left")],
        "reg_lambda": [Interval(Real, 0, None, closed="left")],
    }
    _method_name = "CoNAL"

    def __init__(self, module=None, *, embed_dim=20, reg_lambda=1e-5, **kwargs):
        super().__init__(module, **kwargs)
        self.embed_dim = embed_dim
        self.reg_lambda = reg_lambda

    def _build_crowd_module(self, gt_model, n_features, instance_dim, n_classes, n_annotators):
        return CoNALModule(
            gt_model,
            n_annotators=n_annotators,
            instance_dim=instance_dim,
            n_classes=n_classes,
            embed_dim=self.embed_dim,
            reg_lambda=self.reg_lambda,
        )

    def _net_options(self, module):
        # A warm start trains the fitted module on: the current weight applies.
        module.reg_lambda = self.reg_lambda
        return {}
