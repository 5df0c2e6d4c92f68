"""Scores of predictions against noisy annotation matrices (no ground truth needed)."""

from __future__ import annotations

import numpy as np

from ._validation import check_annotations


def annotation_accuracy_score(Z, y_pred, *, missing_label=-1, sample_weight=None):
    """Fraction of observed annotations that agree with the predictions.

    Each observed entry ``Z[i, m]`` counts once (times ``sample_weight[i]``);
    missing entries are ignored, so annotators without labels in ``Z`` simply
    do not contribute. With a 1-D ``Z`` this is ordinary accuracy.

    Parameters
    ----------
    Z : array-like or DataFrame of shape (n_samples, n_annotators) or (n_samples,)
        Annotations, ``missing_label`` (or NaN/None) where missing.
    y_pred : array-like of shape (n_samples,)
        Predicted class labels.
    missing_label : scalar, str or None, default=-1
        Marks a missing annotation.
    sample_weight : array-like of shape (n_samples,), default=None
        Weight of every label of sample ``i``.

    Returns
    -------
    score : float
        Weighted agreement in [0, 1].

    Examples
    --------
    >>> from skannot.metrics import annotation_accuracy_score
    >>> Z = [[0, 1], [1, -1], [1, 1]]
    >>> annotation_accuracy_score(Z, [0, 1, 1])
    0.8
    """
    y_pred = np.asarray(y_pred)
    annotations, classes, _ = check_annotations(Z, missing_label=missing_label, n_samples=len(y_pred))
    samples = annotations.samples
    agree = classes[annotations.labels] == y_pred[samples]
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=float)[samples]
    return float(np.average(agree, weights=weights))
