"""Annotator identities after ``fit``: names to column indices, and new annotations read against the fit.

A fitted estimator knows its annotators by column (``0 .. n_annotators_ - 1``)
and by name (``annotator_names_``: the column names of a DataFrame ``Z``, or
the column indices). The functions here turn what a user passes, names or
indices, into column indices, and read an annotation matrix of new or
training items so that its columns and classes mean what they meant at fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._validation import Annotations, check_annotations


def annotator_indices(annotators, names):
    """Column indices of ``annotators``, given by name or by index.

    Every entry is looked up among ``names`` first, so that integer names
    (worker ids of a DataFrame's columns) mean the worker and not the column;
    when not all entries are names and all are integers, they are column
    indices. With the default names ``0 .. n_annotators - 1`` both readings
    agree.

    Parameters
    ----------
    annotators : array-like of shape (n_selected,)
        Annotator names (values of ``names``) or column indices.
    names : array-like of shape (n_annotators,)
        The annotator names, e.g. an estimator's ``annotator_names_``.

    Returns
    -------
    indices : ndarray of int64 of shape (n_selected,)

    Raises
    ------
    ValueError
        If ``annotators`` is not 1-D, holds names that are not among
        ``names``, or indices outside ``[0, n_annotators)``.

    Examples
    --------
    >>> from skannot._annotators import annotator_indices
    >>> annotator_indices(["w3", "w1"], ["w1", "w2", "w3"])
    array([2, 0])
    >>> annotator_indices([1], ["w1", "w2", "w3"])
    array([1])
    """
    values = np.asarray(annotators, dtype=object if isinstance(annotators, (list, tuple)) else None)
    if values.ndim != 1:
        raise ValueError(
            f"annotators must be a 1-D list of annotator names or column indices; got an array of "
            f"shape {values.shape}. Wrap a single annotator in a list: annotators=[name]."
        )
    names = pd.Index(np.asarray(names, dtype=object))
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    if names.is_unique:
        found = names.get_indexer(values)
        if (found >= 0).all():
            return found.astype(np.int64)
    else:
        found = np.full(len(values), -1)
    integers = all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values)
    if not integers:
        unknown = [v for v, i in zip(values.tolist(), found) if i < 0]
        raise ValueError(
            f"annotators {unknown[:5]} are neither annotator names nor column indices; the "
            f"annotators are {names.tolist()[:10]}{' ...' if len(names) > 10 else ''} "
            "(annotator_names_), at columns 0 .. {}.".format(len(names) - 1)
        )
    indices = values.astype(np.int64)
    if indices.min() < 0 or indices.max() >= len(names):
        raise ValueError(
            f"annotators must lie in [0, {len(names)}) as column indices, or be annotator names; got "
            f"{indices.tolist()[:10]}."
        )
    return indices


def check_fitted_annotations(estimator, Z, n_samples):
    """Read ``Z`` as annotations of the annotators and classes ``estimator`` was fitted on.

    A DataFrame's columns are matched to ``annotator_names_`` by name: they
    may come in any order, and annotators left out simply have no labels.
    Any other ``Z`` must have one column per fitted annotator, in the fitted
    order. Labels must be among ``classes_``.

    Parameters
    ----------
    estimator : fitted estimator of the family
        Supplies ``classes_``, ``missing_label``, ``n_annotators_`` and
        ``annotator_names_``.
    Z : array-like, DataFrame or scipy sparse matrix of shape (n_samples, n_columns) or (n_samples,)
        Annotations, ``missing_label`` (or NaN/None) where missing; an
        all-missing ``Z`` is allowed.
    n_samples : int
        Number of rows ``Z`` must have.

    Returns
    -------
    annotations : Annotations
        Observed labels with annotator indices into the fitted columns and
        class indices into ``classes_``.

    Raises
    ------
    ValueError
        If ``Z`` has another number of rows, other annotators or labels
        outside ``classes_``.
    """
    name = type(estimator).__name__
    try:
        annotations, _, columns = check_annotations(
            Z, missing_label=estimator.missing_label, classes=estimator.classes_, n_samples=n_samples
        )
    except ValueError as exc:
        message = str(exc)
        if "no observed label" in message:
            annotations, columns = _no_labels(Z, n_samples)
        elif "not in classes" in message:
            raise ValueError(
                f"{message} {name} was fitted on these classes and gives no probability to others: "
                "mark such labels as missing, or refit with classes=[...] listing every class."
            ) from exc
        else:
            raise
    if columns is not None:
        positions = annotator_positions(columns, estimator.annotator_names_)
        return Annotations(
            annotations.indptr,
            positions[annotations.annotators],
            annotations.labels,
            estimator.n_annotators_,
        )
    if annotations.n_annotators != estimator.n_annotators_:
        raise ValueError(
            f"Z has {annotations.n_annotators} annotator columns but {name} was fitted with "
            f"{estimator.n_annotators_}; pass one column per fitted annotator in the fitted order, "
            "or a DataFrame whose column names are the annotator_names_."
        )
    return annotations


def annotator_positions(columns, names):
    """Fitted position of each of ``columns`` (a DataFrame's column names) among ``names``."""
    columns = pd.Index(np.asarray(columns, dtype=object))
    names = pd.Index(np.asarray(names, dtype=object))
    if columns.has_duplicates:
        raise ValueError(
            f"Z has repeated column names such as {columns[columns.duplicated()][0]!r}; each annotator "
            "must be one column."
        )
    positions = names.get_indexer(columns) if names.is_unique else np.full(len(columns), -1)
    if (positions < 0).any():
        unknown = columns[positions < 0].tolist()
        raise ValueError(
            f"Z has columns {unknown[:5]} that are not annotators the estimator was fitted on "
            f"(annotator_names_ = {names.tolist()[:10]}{' ...' if len(names) > 10 else ''}). Name the "
            "columns as at fit (they may come in any order, and annotators may be left out), or pass "
            "an array with one column per fitted annotator."
        )
    return positions.astype(np.int64)


def _no_labels(Z, n_samples):
    """Empty annotations of the shape of ``Z``, and its column names (or None)."""
    columns = None
    if isinstance(Z, pd.DataFrame):
        columns = Z.columns
    shape = Z.shape if hasattr(Z, "shape") else np.shape(Z)
    n_columns = 1 if len(shape) == 1 else shape[1]
    empty = np.zeros(0, dtype=np.int64)
    return Annotations(np.zeros(n_samples + 1, dtype=np.int64), empty, empty, n_columns), columns
