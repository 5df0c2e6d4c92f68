"""Scores of predictions against noisy annotation matrices (no ground truth needed).

Two kinds of function live here:

- metrics, ``*_score(Z, y_pred, ...)``, which compare predictions with
  annotations, like scikit-learn's ``accuracy_score``;
- scorers, ``*_scorer(estimator, X, Z)``, which take a fitted estimator (or a
  pipeline ending in one) and can be passed as ``scoring=`` to
  ``GridSearchCV``, ``cross_val_score`` or ``cross_validate``.

All of them use the observed annotations only: missing entries, and
annotators without any label in the data scored, do not count.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import DataConversionWarning

from ._validation import check_annotations, check_sample_weight


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
        Predicted class labels, of the annotations' type (strings for
        string labels, numbers otherwise). A column vector of shape
        (n_samples, 1) is raveled with a ``DataConversionWarning``.
    missing_label : scalar, str or None, default=-1
        Marks a missing annotation.
    sample_weight : array-like of shape (n_samples,), default=None
        Weight of every label of sample ``i``; finite, non-negative, and
        positive for at least one sample with a label.

    Returns
    -------
    score : float
        Weighted agreement in [0, 1].

    Raises
    ------
    ValueError
        If ``y_pred`` is not one label per row of ``Z``, its labels are of
        another type than the annotations (strings against numbers), or
        ``sample_weight`` is not one valid weight per row of ``Z``.

    Examples
    --------
    >>> from skannot.metrics import annotation_accuracy_score
    >>> Z = [[0, 1], [1, -1], [1, 1]]
    >>> annotation_accuracy_score(Z, [0, 1, 1])
    0.8
    """
    y_pred = _check_predictions(y_pred)
    annotations, classes, _ = check_annotations(Z, missing_label=missing_label)
    if len(y_pred) != annotations.n_samples:
        raise ValueError(
            f"y_pred has {len(y_pred)} predictions but Z has {annotations.n_samples} rows; y_pred[i] "
            "must be the predicted label of the sample of row i of Z."
        )
    _check_label_types(y_pred, classes)
    samples = annotations.samples
    agree = classes[annotations.labels] == y_pred[samples]
    return float(np.average(agree, weights=_label_weights(sample_weight, annotations)))


def _check_predictions(y_pred):
    """``y_pred`` as a 1-D array, raveling a column vector with a warning as scikit-learn does."""
    try:
        y_pred = np.asarray(y_pred)
    except ValueError as exc:
        raise ValueError(f"y_pred cannot be read as a 1-D array of labels ({exc}).") from exc
    if y_pred.ndim == 2 and y_pred.shape[1] == 1:
        warnings.warn(
            "y_pred is a column vector of shape (n_samples, 1) where a 1-D array of shape "
            "(n_samples,) was expected; it is raveled. Pass y_pred.ravel() to avoid this warning.",
            DataConversionWarning,
            stacklevel=3,
        )
        y_pred = y_pred.ravel()
    if y_pred.ndim != 1:
        raise ValueError(
            f"y_pred must be 1-D of shape (n_samples,), one predicted label per row of Z; got shape "
            f"{y_pred.shape}."
        )
    return y_pred


def _label_type(values):
    """'string', 'numeric' or 'mixed' for an array of labels."""
    if values.dtype.kind in "US":
        return "string"
    if values.dtype.kind != "O":
        return "numeric"
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("string", "bytes"):
        return "string"
    if inferred in ("mixed", "mixed-integer"):
        return "mixed"
    return "numeric"


def _check_label_types(y_pred, classes):
    """Refuse predictions that cannot equal any annotation: strings against numbers or the reverse."""
    predicted, annotated = _label_type(y_pred), _label_type(classes)
    if predicted != annotated:
        raise ValueError(
            f"Mix of label input types: y_pred holds {predicted} labels but Z holds {annotated} "
            "labels, so no prediction can agree with an annotation; predict labels of the "
            "annotations' type (e.g. fit the classifier on the same kind of labels as Z)."
        )


def _label_weights(sample_weight, annotations):
    """The weight of each observed label, from one weight per sample; None without weights."""
    sample_weight = check_sample_weight(sample_weight, annotations.n_samples)
    if sample_weight is None:
        return None
    weights = sample_weight[annotations.samples]
    if not weights.sum() > 0:
        raise ValueError(
            "sample_weight gives every observed label a weight of 0 (the weights of all samples "
            "with a label are 0), so there is nothing to average; give at least one labelled "
            "sample a positive weight."
        )
    return weights


def _final_estimator(estimator):
    """The last step of a pipeline, or the estimator itself."""
    steps = getattr(estimator, "steps", None)
    return estimator if steps is None else steps[-1][1]


def _transform_for_final(estimator, X):
    """``X`` passed through every pipeline step before the last one."""
    for _, step in getattr(estimator, "steps", [])[:-1]:
        if step is not None and not (isinstance(step, str) and step == "passthrough"):
            X = step.transform(X)
    return X


def annotation_accuracy_scorer(estimator, X, Z, *, sample_weight=None):
    """Accuracy of ``estimator.predict(X)`` against the observed annotations ``Z``.

    The scorer form of :func:`annotation_accuracy_score`, and what
    :meth:`skannot.AnnotMixClassifier.score` returns. It reads the final
    estimator's ``missing_label`` (default -1), so it also scores pipelines and
    other classifiers on held-out annotations.

    Parameters
    ----------
    estimator : fitted classifier or Pipeline
    X : array-like or DataFrame of shape (n_samples, n_features)
    Z : array-like or DataFrame of shape (n_samples, n_annotators) or (n_samples,)
        Held-out annotations.
    sample_weight : array-like of shape (n_samples,), default=None
        Weight of every label of sample ``i``.

    Returns
    -------
    score : float
        In [0, 1]; higher is better.
    """
    missing_label = getattr(_final_estimator(estimator), "missing_label", -1)
    return annotation_accuracy_score(
        Z, estimator.predict(X), missing_label=missing_label, sample_weight=sample_weight
    )


def annotation_log_likelihood_scorer(estimator, X, Z, *, sample_weight=None):
    """Mean log-likelihood of the observed annotations under a fitted annot-mix model.

    Each observed label ``z = Z[i, m]`` contributes
    ``log P(z | x_i, m) = log sum_y p(y | x_i) P(z | x_i, m, y)``, the quantity
    annot-mix maximises in training, evaluated on held-out data without mixup.
    It judges the class posteriors and the annotator model together and is a
    proper scoring rule, so it also rewards calibrated probabilities. Its cost
    grows with the number of observed labels, not with
    n_samples x n_annotators.

    Parameters
    ----------
    estimator : fitted AnnotMixClassifier or Pipeline ending in one
    X : array-like or DataFrame of shape (n_samples, n_features)
    Z : array-like or DataFrame of shape (n_samples, n_annotators)
        Held-out annotations with the fitted estimator's annotator columns;
        ``missing_label`` (or NaN/None) where missing.
    sample_weight : array-like of shape (n_samples,), default=None
        Weight of every label of sample ``i``; as in
        :func:`annotation_accuracy_score`.

    Returns
    -------
    score : float
        At most 0; higher is better. ``-log(n_classes)`` is what a model
        that knows nothing scores.

    Raises
    ------
    ValueError
        If ``Z`` has another number of annotators than the training data, no
        observed label, or labels outside the estimator's ``classes_`` (pass
        ``classes=[...]`` to the estimator so that every class gets a
        probability).

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skannot import AnnotMixClassifier
    >>> from skannot.metrics import annotation_log_likelihood_scorer
    >>> search = GridSearchCV(
    ...     AnnotMixClassifier(), {"alpha": [0.5, 1.0]}, scoring=annotation_log_likelihood_scorer
    ... )
    """
    final = _final_estimator(estimator)
    if not hasattr(final, "_annotation_log_likelihood"):
        raise TypeError(
            "annotation_log_likelihood_scorer needs an AnnotMixClassifier, or a Pipeline ending "
            f"in one, to give P(z | x, a); got {type(final).__name__}. Use "
            "annotation_accuracy_scorer to score other classifiers."
        )
    X = final._validated_X(_transform_for_final(estimator, X))
    annotations, _, _ = check_annotations(
        Z, missing_label=final.missing_label, classes=final.classes_, n_samples=len(X)
    )
    if annotations.n_annotators != final.n_annotators_:
        raise ValueError(
            f"Z has {annotations.n_annotators} annotator columns but the estimator was fitted "
            f"with {final.n_annotators_}; score held-out rows of the same annotation matrix."
        )
    weights = _label_weights(sample_weight, annotations)
    log_likelihood = final._annotation_log_likelihood(X, annotations)
    return float(np.average(log_likelihood, weights=weights))
