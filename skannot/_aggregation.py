"""Label aggregation on :class:`~skannot._validation.Annotations`: vote shares, majority vote, Dawid-Skene.

The back end of the two-stage baseline (aggregate the labels, then train a
classifier on the result) and of the public helpers in
:mod:`skannot.annotations`. Everything works on the observed labels only, in
vectorised numpy: the cost grows with the number of labels, never with
n_samples x n_annotators, and nothing loops over samples or labels.

References
----------
A. P. Dawid and A. M. Skene (1979). Maximum likelihood estimation of observer
error-rates using the EM algorithm. *Journal of the Royal Statistical Society,
Series C (Applied Statistics)*, 28(1), 20-28.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from scipy.special import logsumexp
from sklearn.utils import check_random_state


def vote_posteriors(annotations, n_classes):
    """Share of each class among the labels of every sample.

    Parameters
    ----------
    annotations : Annotations
        Observed labels, class indices in ``[0, n_classes)``.
    n_classes : int
        Number of classes.

    Returns
    -------
    shares : ndarray of shape (n_samples, n_classes)
        ``shares[i, k]`` is the fraction of the labels of sample ``i`` that
        are ``k``; rows of samples without labels are uniform. Every row
        sums to 1.
    """
    return _normalise(annotations.votes(n_classes))


def majority_vote_labels(annotations, n_classes, random_state=None):
    """Most frequent class of every sample, ties broken uniformly at random.

    Parameters
    ----------
    annotations : Annotations
        Observed labels, class indices in ``[0, n_classes)``.
    n_classes : int
        Number of classes.
    random_state : int, RandomState instance or None, default=None
        Breaks ties, through :func:`sklearn.utils.check_random_state`. One
        uniform key is drawn for every (sample, class) cell, whether tied or
        not, so that a seed gives the same result whatever the votes; among
        the tied classes of a sample the one with the largest key wins, which
        picks each of them with exactly the same probability.

    Returns
    -------
    y : ndarray of shape (n_samples,)
        Class index of the majority label of each sample, -1 for samples
        without labels.
    """
    votes = annotations.votes(n_classes)
    keys = check_random_state(random_state).random_sample(votes.shape)
    tied = votes == votes.max(axis=1, keepdims=True)
    winner = np.argmax(np.where(tied, keys, -1.0), axis=1)
    return np.where(votes.any(axis=1), winner, -1)


@dataclass(frozen=True)
class DawidSkeneResult:
    """What :func:`dawid_skene` estimates.

    Attributes
    ----------
    posteriors : ndarray of shape (n_samples, n_classes)
        ``P(y_i = k | labels of sample i)`` under the estimated parameters;
        rows sum to 1, and rows of samples without labels equal ``priors``.
    confusion : ndarray of shape (n_annotators, n_classes, n_classes)
        ``confusion[m, k, l]`` is the estimated probability that annotator
        ``m`` answers ``l`` when the true class is ``k``; every row sums to 1.
        Annotators without labels (and, with ``smoothing=0``, classes an
        annotator has no posterior mass for) get uniform rows.
    priors : ndarray of shape (n_classes,)
        Estimated class proportions; sums to 1.
    log_likelihood : ndarray of shape (n_iter,)
        After each iteration, the objective EM increases: the log-likelihood
        of the observed labels plus the smoothing term
        ``smoothing * (sum(log(confusion)) + sum(log(priors)))``, i.e. the
        log posterior density under the Dirichlet prior that the smoothing
        amounts to (up to a constant). It never decreases; with
        ``smoothing=0`` it is the plain marginal log-likelihood.
    n_iter : int
        Number of EM iterations run (an M-step followed by an E-step each).
    converged : bool
        Whether the objective per observed label changed by less than
        ``tol`` before ``max_iter`` iterations were spent.
    """

    posteriors: np.ndarray
    confusion: np.ndarray
    priors: np.ndarray
    log_likelihood: np.ndarray
    n_iter: int
    converged: bool


def dawid_skene(annotations, n_classes, *, max_iter=100, tol=1e-6, smoothing=0.01):
    """Estimate true-class posteriors and annotator confusion matrices by EM.

    The model of Dawid & Skene (1979): each sample has a latent true class
    ``k`` drawn from ``priors``, and annotator ``m`` labels it ``l`` with
    probability ``confusion[m, k, l]``, independently of the other
    annotators. As in the paper, EM starts from the majority-vote shares
    (:func:`vote_posteriors`) as posteriors, then alternates

    - an M-step: ``confusion`` and ``priors`` from the posterior-weighted
      label counts, and
    - an E-step: the posteriors from Bayes' rule, computed in log space.

    It stops when the objective (see ``log_likelihood`` in
    :class:`DawidSkeneResult`) per observed label changes by less than
    ``tol``, or after ``max_iter`` iterations. The result depends on the data
    only: there is no random initialisation.

    Where this differs from the plain maximum-likelihood estimate of the
    paper: the M-step adds ``smoothing`` pseudo-counts to every cell of every
    confusion row and to every class of the priors. That is the
    maximum-a-posteriori estimate under a symmetric Dirichlet prior with
    concentration ``1 + smoothing``; it keeps the rows of annotators with
    few labels away from exact 0 and 1 (a single label no longer makes an
    annotator infallible) and every logarithm finite. Its effect fades as an
    annotator's labels grow in number; ``smoothing=0`` gives the paper's
    estimate.

    Samples without labels carry no information on the parameters: they are
    left out of the M-step and get the priors as posteriors. Annotators
    without labels get uniform confusion rows and change no posterior.

    Parameters
    ----------
    annotations : Annotations
        Observed labels, class indices in ``[0, n_classes)``.
    n_classes : int
        Number of classes.
    max_iter : int, default=100
        Largest number of EM iterations, at least 1.
    tol : float, default=1e-6
        Convergence threshold on the change of the objective divided by the
        number of observed labels (a per-label scale, so that one ``tol``
        suits small and large data sets).
    smoothing : float, default=0.01
        Pseudo-count added to every confusion cell and class prior in the
        M-step; 0 for the plain maximum-likelihood estimate.

    Returns
    -------
    result : DawidSkeneResult
        Posteriors, confusion matrices, priors, the objective after each
        iteration, the number of iterations and whether EM converged.

    Raises
    ------
    ValueError
        If ``max_iter``, ``tol`` or ``smoothing`` is out of range.
    """
    if not isinstance(max_iter, Integral) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter={max_iter!r} must be an int of at least 1.")
    for name, value in (("tol", tol), ("smoothing", smoothing)):
        if not isinstance(value, Real) or isinstance(value, bool) or not 0 <= value < np.inf:
            raise ValueError(f"{name}={value!r} must be a finite number of at least 0.")

    samples = annotations.samples
    labelled = np.diff(annotations.indptr) > 0
    posteriors = vote_posteriors(annotations, n_classes)
    history = []
    converged = False
    for _ in range(max_iter):
        confusion, priors = _m_step(annotations, samples, labelled, posteriors, n_classes, smoothing)
        posteriors, log_likelihood = _e_step(annotations, samples, confusion, priors)
        if smoothing > 0:
            log_likelihood += smoothing * (np.log(confusion).sum() + np.log(priors).sum())
        history.append(log_likelihood)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol * max(annotations.n_labels, 1):
            converged = True
            break
    return DawidSkeneResult(
        posteriors=posteriors,
        confusion=confusion,
        priors=priors,
        log_likelihood=np.asarray(history),
        n_iter=len(history),
        converged=converged,
    )


def annotator_confusion(annotations, posteriors, n_classes, smoothing=0.01):
    """Each annotator's confusion matrix against given true-class posteriors.

    The M-step of :func:`dawid_skene` on its own: posterior-weighted counts of
    each annotator's labels per true class, plus ``smoothing`` pseudo-counts,
    row-normalised. With one-hot posteriors (e.g. majority-vote labels) it is
    the smoothed empirical confusion against those labels.

    Parameters
    ----------
    annotations : Annotations
        Observed labels, class indices in ``[0, n_classes)``.
    posteriors : ndarray of shape (n_samples, n_classes)
        True-class probabilities of every sample.
    n_classes : int
        Number of classes.
    smoothing : float, default=0.01
        Pseudo-count added to every cell.

    Returns
    -------
    confusion : ndarray of shape (n_annotators, n_classes, n_classes)
        Rows sum to 1.
    """
    labelled = np.diff(annotations.indptr) > 0
    return _m_step(annotations, annotations.samples, labelled, posteriors, n_classes, smoothing)[0]


def _m_step(annotations, samples, labelled, posteriors, n_classes, smoothing):
    """Confusion matrices and priors from the posterior-weighted label counts."""
    n_annotators = annotations.n_annotators
    # counts[m, k, l] = sum of posteriors[i, k] over the samples i that annotator m labels l,
    # as one bincount over the flat index of (m, k, l) for every label and every k.
    cell = (annotations.annotators * n_classes * n_classes + annotations.labels)[:, None] + n_classes * (
        np.arange(n_classes)[None, :]
    )
    counts = np.bincount(
        cell.ravel(), weights=posteriors[samples].ravel(), minlength=n_annotators * n_classes * n_classes
    ).reshape(n_annotators, n_classes, n_classes)
    confusion = _normalise(counts + smoothing)
    priors = _normalise(posteriors[labelled].sum(axis=0) + smoothing)
    return confusion, priors


def _e_step(annotations, samples, confusion, priors):
    """Posteriors and log-likelihood of the observed labels under ``confusion`` and ``priors``."""
    n_samples, n_classes = annotations.n_samples, len(priors)
    # With smoothing=0 a class can have zero probability; its log is -inf, which logsumexp handles.
    with np.errstate(divide="ignore"):
        log_confusion = np.log(confusion)
        log_priors = np.log(priors)
    # Row j of per_label: log P(label j | true class k) for every k.
    per_label = log_confusion[annotations.annotators, :, annotations.labels]
    flat = samples[:, None] * n_classes + np.arange(n_classes)[None, :]
    log_joint = log_priors + np.bincount(
        flat.ravel(), weights=per_label.ravel(), minlength=n_samples * n_classes
    ).reshape(n_samples, n_classes)
    log_evidence = logsumexp(log_joint, axis=1, keepdims=True)
    # Samples without labels have log_evidence log(sum(priors)) = 0 and add nothing.
    return np.exp(log_joint - log_evidence), float(log_evidence.sum())


def _normalise(counts):
    """Divide ``counts`` by their sums along the last axis; rows summing to 0 become uniform."""
    totals = counts.sum(axis=-1, keepdims=True)
    uniform = np.full_like(counts, 1.0 / counts.shape[-1])
    return np.divide(counts, totals, out=uniform, where=totals > 0)
