"""Helpers on annotation data: label aggregation."""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from ._validation import check_annotations


def majority_vote(Z, *, missing_label=-1, classes=None, random_state=None):
    """Most frequent label of each sample, ties broken at random.

    Parameters
    ----------
    Z : array-like or DataFrame of shape (n_samples, n_annotators) or (n_samples,)
        Annotations, ``missing_label`` (or NaN/None) where missing.
    missing_label : scalar, str or None, default=-1
        Marks a missing annotation; also marks samples without any label in
        the result.
    classes : array-like of shape (n_classes,), default=None
        All class labels; by default the observed ones.
    random_state : int, RandomState instance or None, default=None
        Breaks ties between equally frequent labels.

    Returns
    -------
    y : ndarray of shape (n_samples,)
        Majority label per sample; ``missing_label`` for samples without
        any label (the array is of object dtype when ``missing_label`` does
        not fit the label dtype).

    Examples
    --------
    >>> from skannot.annotations import majority_vote
    >>> majority_vote([[0, 0, 1], [2, -1, 2], [-1, -1, -1]])
    array([ 0,  2, -1])
    """
    try:
        annotations, classes_, _ = check_annotations(Z, missing_label=missing_label, classes=classes)
    except ValueError as exc:
        if "no observed label" not in str(exc):
            raise
        n_samples = len(np.asarray(Z))
        return np.full(n_samples, missing_label, dtype=object if missing_label is None else None)
    n_samples, n_classes = annotations.n_samples, len(classes_)
    votes = np.zeros((n_samples, n_classes))
    np.add.at(votes, (annotations.samples, annotations.labels), 1.0)
    noise = check_random_state(random_state).uniform(0, 0.5, size=votes.shape)
    winner = np.argmax(votes + noise, axis=1)
    y = classes_[winner]
    unlabelled = votes.sum(1) == 0
    if unlabelled.any():
        if np.can_cast(np.asarray(missing_label), y.dtype, casting="same_kind"):
            y = y.copy()
        else:
            y = y.astype(object)
        y[unlabelled] = missing_label
    return y
