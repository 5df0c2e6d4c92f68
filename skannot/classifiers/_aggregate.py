"""Two-stage baseline: aggregate the annotations, then train the GT model on the aggregated labels."""

from __future__ import annotations

from numbers import Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from torch.nn import functional as F

from .._aggregation import annotator_confusion, dawid_skene, majority_vote_labels, vote_posteriors
from .._base import BaseCrowdClassifier
from .._consensus import consensus_from_evidence, vote_consensus
from .._nn import CrowdModule, mix_pairs, weighted_mean
from .._training import inference_chunks
from .._validation import Annotations


class AggregateModule(CrowdModule):
    """GT model trained with cross-entropy on one label per instance, with fixed annotator matrices.

    Training sees the aggregated labels only (one pair per instance, the
    "annotator" index unused); the annotators' confusion matrices are those
    the aggregation estimated, fixed, so that ``P(z | x, a) = sum_y p(y | x)
    A_a[y, z]`` (annotator predictions, the held-out likelihood) is defined.

    Parameters
    ----------
    gt_model : nn.Module
        Maps x to ``(logits, embedding)``.
    confusion : ndarray of shape (n_annotators, n_classes, n_classes)
        Row-stochastic confusion matrix of every annotator.
    """

    supports_mixup = True

    def __init__(self, gt_model, confusion):
        super().__init__(gt_model)
        self.register_buffer("log_confusion_table", torch.as_tensor(np.log(confusion), dtype=torch.float32))

    def log_confusion(self, embedding, annotators):
        return self.log_confusion_table[annotators]

    def training_loss(self, x, rows, annotators, labels, lam=None, partner=None, weights=None):
        """Cross-entropy on the aggregated labels; with ``lam``, mixup of (instance, one-hot label) pairs.

        ``weights`` scale each pair's cross-entropy (:func:`~skannot._nn.weighted_mean`).
        Parameters and returns as for :meth:`CrowdModule.training_loss`.
        """
        if lam is None:
            logits = self.gt_model(x)[0]
            if weights is None:
                return F.cross_entropy(logits[rows].float(), labels), logits
            losses = F.cross_entropy(logits[rows].float(), labels, reduction="none")
            return weighted_mean(losses, weights), logits
        logits = self.gt_model(mix_pairs(x[rows], lam, partner))[0]
        log_proba = F.log_softmax(logits.float(), dim=1)
        own = log_proba.gather(1, labels[:, None])[:, 0]
        other = log_proba.gather(1, labels[partner][:, None])[:, 0]
        lam = lam.to(own.dtype)
        return -weighted_mean(lam * own + (1 - lam) * other, weights), logits


class AggregateClassifier(BaseCrowdClassifier):
    """Two-stage baseline: aggregate each instance's annotations, then train the GT model on the result.

    The annotations of every instance are reduced to one label, by majority
    vote (ties broken at random with ``random_state``) or by the posterior
    mode of the Dawid-Skene model [1]_ fitted by EM
    (:func:`skannot.annotations.dawid_skene`); the GT model is then trained
    with cross-entropy on those labels, as an ordinary classifier. With
    ``alpha > 0`` training uses mixup [2]_: each instance and its one-hot
    label are mixed with a random partner's with ``lambda ~ Beta(alpha,
    alpha)``. The annot-mix paper's baselines "MV" and "MV + mixup" are
    ``aggregation="majority_vote"`` with ``alpha=0`` and ``alpha=1``; a 1-D
    ``y`` (one annotator, e.g. gold labels) trains a plain classifier.

    Parameters
    ----------
    aggregation : {"majority_vote", "dawid_skene"}, default="majority_vote"
        How the labels of an instance are reduced to one.
    alpha : float >= 0, default=0.0
        Mixup concentration; 0 turns mixup off.
    {shared_parameters}

    Attributes
    ----------
    {shared_attributes}
    annotator_confusion_ : ndarray of shape (n_annotators_, n_classes, n_classes)
        Each annotator's confusion matrix as the aggregation estimates it:
        the Dawid-Skene estimate, or for majority vote the empirical
        confusion of the annotator's labels against the majority-vote labels
        (with 0.01 pseudo-counts per cell). These matrices are fixed; the
        GT model does not change them.
    annotator_accuracy_ : ndarray of shape (n_annotators_,)
        Estimated fraction of each annotator's training labels that are
        correct: the mean, over its labels, of their ``support`` (see
        :meth:`label_quality`) under the aggregation, i.e. the share of the
        item's other labels that agree (majority vote) or the Dawid-Skene
        posterior of the label's class from the item's other labels under a
        uniform class prior; where an item has no other label, its prior:
        ``p(y = z | x)`` of the GT model for majority vote,
        ``class_prior_[z]`` for Dawid-Skene. For an annotator without labels,
        ``mean_x sum_y p(y | x) A_m[y, y]`` over up to 1,024 training
        instances.
    class_prior_ : ndarray of shape (n_classes,)
        Class proportions of the aggregation: the Dawid-Skene priors, or the
        mean vote shares of the labelled instances for majority vote.

    Notes
    -----
    The consensus of :meth:`predict_consensus_proba` (and the ``quality``
    of :meth:`label_quality`) is the aggregation's own posterior, which does
    not read the features: the vote shares of an item's labels for majority
    vote, and for Dawid-Skene ``class_prior_[y] prod_m A_m[y, z_m]`` with the
    fitted confusion matrices ``A`` (``annotator_confusion_``). Items
    without labels get ``p(y | x)`` of the GT model.

    References
    ----------
    .. [1] A. P. Dawid and A. M. Skene, "Maximum Likelihood Estimation of
       Observer Error-Rates Using the EM Algorithm", Journal of the Royal
       Statistical Society C 28(1), 1979.
    .. [2] H. Zhang, M. Cisse, Y. N. Dauphin and D. Lopez-Paz, "mixup: Beyond
       Empirical Risk Minimization", ICLR 2018.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot import AggregateClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 4)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> Z = np.where(rng.random((200, 3)) < 0.8, y[:, None], 1 - y[:, None])
    >>> clf = AggregateClassifier(aggregation="dawid_skene", max_epochs=5, random_state=0).fit(X, Z)
    >>> clf.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = {
        **BaseCrowdClassifier._parameter_constraints,
        "aggregation": [StrOptions({"majority_vote", "dawid_skene"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, module=None, *, aggregation="majority_vote", alpha=0.0, **kwargs):
        super().__init__(module, **kwargs)
        self.aggregation = aggregation
        self.alpha = alpha

    def _training_annotations(self, annotations, n_classes):
        if self.aggregation == "dawid_skene":
            result = dawid_skene(annotations, n_classes)
            labels, confusion = result.posteriors.argmax(1), result.confusion
            self.class_prior_ = result.priors
        else:
            labels = majority_vote_labels(annotations, n_classes, check_random_state(self.random_state))
            confusion = annotator_confusion(annotations, np.eye(n_classes)[labels], n_classes)
            self.class_prior_ = vote_posteriors(annotations, n_classes).mean(0)
        self._aggregated_confusion = confusion
        n = annotations.n_samples
        return Annotations(np.arange(n + 1), np.zeros(n, dtype=np.int64), labels.astype(np.int64), 1)

    def _build_crowd_module(self, gt_model, n_features, instance_dim, n_classes, n_annotators):
        return AggregateModule(gt_model, self._aggregated_confusion)

    def _net_options(self, module):
        # This fit's aggregation gives the fixed matrices, also when a warm start reuses the module.
        confusion = torch.as_tensor(np.log(self.__dict__.pop("_aggregated_confusion")))
        module.log_confusion_table.copy_(confusion)
        return {"alpha": self.alpha}

    def _consensus(self, X, annotations, posterior=True):
        """The aggregation's posterior: vote shares, or Dawid-Skene's with its fitted parameters.

        Parameters and returns as for :meth:`BaseCrowdClassifier._consensus`.
        """
        with torch.inference_mode():
            majority = self.aggregation == "majority_vote"
            log_prior = self._log_class_proba(X).double() if posterior or majority else None
            if majority:
                return vote_consensus(log_prior, annotations, len(self.classes_))
            # Labelled items get class_prior_ from the chunks; log_prior stays for the others.
            return consensus_from_evidence(annotations, self._table_evidence(annotations), log_prior)

    def _table_evidence(self, annotations):
        """``(lo, hi, log class_prior_, log A_m[:, z])`` of the labels at CSR positions ``lo:hi``."""
        table = self.net_.module_.log_confusion_table.double().cpu()
        log_prior = torch.from_numpy(np.log(self.class_prior_))
        annotators = torch.from_numpy(annotations.annotators)
        labels = torch.from_numpy(annotations.labels)
        indptr = annotations.indptr
        rows_per_chunk = self._rows_per_pair_chunk(int(np.diff(indptr).max(initial=0)))
        for start, stop in inference_chunks(annotations.n_samples, rows_per_chunk):
            lo, hi = int(indptr[start]), int(indptr[stop])
            if lo < hi:
                yield lo, hi, log_prior.expand(hi - lo, -1), table[annotators[lo:hi], :, labels[lo:hi]]
