"""Consensus labels from a fitted model and the observed annotations, and the tables built on them.

For an item with features ``x`` and observed labels ``z = (z_m)`` the
consensus posterior is::

    log p(y | x, z) = log p(y | x) + sum_m log P(z_m | x, m, y) - log normaliser

the E-step of the marginal likelihood every estimator of the family
maximises. For each observed label ``z_j`` (of annotator ``m`` on item ``i``)
two numbers follow:

- ``quality``: ``p(y = z_j | x, z)``, the posterior probability that the
  label is correct given everything known about the item;
- ``support``: ``P(y = z_j | z_{-j})``, the probability of the label's class
  from the *other* labels of the item alone (their likelihoods under the
  annotator model, a uniform class prior), or ``p(y = z_j | x)`` when the
  item has no other label. Neither the label's own likelihood nor the GT
  model, which has learned that very label during ``fit``, vouches for it;
  averaged over an annotator's labels it estimates the annotator's accuracy.

Everything is computed in log space from chunks of labels, each holding all
labels of its rows, so that memory grows with ``n_samples x n_classes`` and
``n_labels``, never with ``n_samples x n_annotators x n_classes**2``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def consensus_from_evidence(annotations, evidence_chunks, log_prior=None):
    """Support of every label and, optionally, the consensus posterior of every item.

    Parameters
    ----------
    annotations : Annotations
        The observed labels, class indices in ``[0, n_classes)``.
    evidence_chunks : iterable of (int, int, Tensor, Tensor)
        ``(lo, hi, pair_log_prior, log_likelihood)`` for the labels at CSR
        positions ``lo:hi``, both tensors of shape (hi - lo, n_classes) and
        float64: the class prior of each label's item (``log p(y | x)``),
        which is also the support of a label that is its item's only one,
        and ``log P(z_j | x, m, y)`` for every class ``y``. Each chunk holds
        all labels of its rows; together they cover every label.
    log_prior : Tensor of shape (n_samples, n_classes), default=None
        The class prior of every item, the posterior of those without
        labels (float64). Without it only the support is computed, and the
        memory needed does not grow with ``n_samples``.

    Returns
    -------
    posterior : ndarray of shape (n_samples, n_classes) or None
        ``p(y | x, z)``, rows summing to 1; None without ``log_prior``.
    support : ndarray of shape (n_labels,)
        ``P(y = z_j | z_{-j})`` of each label, in CSR order (see the module
        docs).
    """
    samples = torch.from_numpy(annotations.samples)
    labels = torch.from_numpy(annotations.labels)
    alone = torch.from_numpy(np.diff(annotations.indptr) == 1)
    support = torch.empty(annotations.n_labels, dtype=torch.float64)
    joint = None if log_prior is None else log_prior.clone()
    for lo, hi, pair_log_prior, log_likelihood in evidence_chunks:
        rows = samples[lo:hi]
        first = int(rows[0])
        local = rows - first
        # The chunk holds every label of its rows, so their sums are complete here.
        summed = torch.zeros(int(local[-1]) + 1, log_likelihood.shape[1], dtype=torch.float64)
        summed.index_add_(0, local, log_likelihood)
        others = torch.where(alone[rows, None], pair_log_prior, summed[local] - log_likelihood)
        own = others.gather(1, labels[lo:hi, None])[:, 0]
        support[lo:hi] = (own - torch.logsumexp(others, 1)).exp()
        if joint is not None:
            joint[rows] = pair_log_prior + summed[local]
    if joint is None:
        return None, support.numpy()
    posterior = (joint - torch.logsumexp(joint, 1, keepdim=True)).exp()
    return posterior.numpy(), support.numpy()


def vote_consensus(log_prior, annotations, n_classes):
    """Vote shares as the consensus, and the share of the other labels as the support.

    Parameters
    ----------
    log_prior : Tensor of shape (n_samples, n_classes)
        ``log p(y | x)``: the posterior of items without labels, and the
        support of a label that is its item's only one.
    annotations : Annotations
        The observed labels.
    n_classes : int

    Returns
    -------
    posterior : ndarray of shape (n_samples, n_classes)
        The share of each class among the item's labels.
    support : ndarray of shape (n_labels,)
        The share of the label's class among the other labels of its item.
    """
    votes = annotations.votes(n_classes)
    counts = votes.sum(1)
    prior = log_prior.exp().numpy()
    posterior = np.where(counts[:, None] > 0, votes / np.maximum(counts, 1)[:, None], prior)
    samples, labels = annotations.samples, annotations.labels
    others = counts[samples] - 1
    agreeing = votes[samples, labels] - 1
    support = np.where(others > 0, agreeing / np.maximum(others, 1), prior[samples, labels])
    return posterior, support


def sample_labels(X, Z, n_samples):
    """What names the items in the tables: X's index, else a pandas Z's index, else the row positions."""
    for data in (X, Z):
        if isinstance(data, (pd.DataFrame, pd.Series)):
            return np.asarray(data.index)
    return np.arange(n_samples)


def label_quality_frame(posterior, support, annotations, classes, annotator_names, samples):
    """One row per observed label: who gave it to which item, and how likely it is correct.

    Parameters
    ----------
    posterior : ndarray of shape (n_samples, n_classes)
        Consensus posterior of every item.
    support : ndarray of shape (n_labels,)
        Support of every label, in CSR order.
    annotations : Annotations
        The observed labels.
    classes : ndarray of shape (n_classes,)
    annotator_names : ndarray of shape (n_annotators,)
    samples : ndarray of shape (n_samples,)
        The name of every item (see :func:`sample_labels`).

    Returns
    -------
    frame : DataFrame of shape (n_labels, 7)
        Columns ``sample``, ``annotator``, ``label``, ``quality``,
        ``support``, ``consensus`` and ``consensus_proba``, in CSR order
        (by item, then by annotator column).
    """
    rows, labels = annotations.samples, annotations.labels
    consensus = posterior.argmax(1)
    return pd.DataFrame(
        {
            "sample": samples[rows],
            "annotator": np.asarray(annotator_names, dtype=object)[annotations.annotators],
            "label": classes[labels],
            "quality": posterior[rows, labels],
            "support": support,
            "consensus": classes[consensus[rows]],
            "consensus_proba": posterior[rows, consensus[rows]],
        }
    )


def annotator_report_frame(posterior, support, annotations, annotator_names, fitted_accuracy):
    """One row per annotator: its number of labels, estimated accuracy and agreement with the consensus.

    Parameters
    ----------
    posterior : ndarray of shape (n_samples, n_classes)
    support : ndarray of shape (n_labels,)
    annotations : Annotations
    annotator_names : ndarray of shape (n_annotators,)
    fitted_accuracy : ndarray of shape (n_annotators,)
        The estimator's ``annotator_accuracy_``.

    Returns
    -------
    report : DataFrame of shape (n_annotators, 4)
        Indexed by annotator name; columns ``n_labels``, ``accuracy`` (mean
        support of the annotator's labels), ``agreement`` (fraction of its
        labels equal to the consensus label), NaN for annotators without
        labels, and ``fitted_accuracy``.
    """
    n_annotators = annotations.n_annotators
    annotators = annotations.annotators
    consensus = posterior.argmax(1)[annotations.samples]
    n_labels = np.bincount(annotators, minlength=n_annotators)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(annotators, weights=support, minlength=n_annotators) / n_labels
        agreement = (
            np.bincount(annotators, weights=annotations.labels == consensus, minlength=n_annotators)
            / n_labels
        )
    return pd.DataFrame(
        {
            "n_labels": n_labels,
            "accuracy": accuracy,
            "agreement": agreement,
            "fitted_accuracy": np.asarray(fitted_accuracy, dtype=float),
        },
        index=pd.Index(np.asarray(annotator_names, dtype=object), name="annotator"),
    )
