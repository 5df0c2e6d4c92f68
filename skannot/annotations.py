"""Helpers on annotation data: long format <-> matrix, label aggregation.

Crowdsourcing platforms and libraries such as crowd-kit export annotations in
*long* format, one row per ``(task, worker, label)``; the estimators here take
the *matrix* form ``Z`` of shape (n_samples, n_annotators). The conversions
keep task and annotator identities in the index and columns.

Two aggregations turn the labels of several annotators into one estimate per
sample: :func:`majority_vote` (the most frequent label) and
:func:`dawid_skene` (class posteriors under per-annotator confusion matrices
estimated by EM, after Dawid & Skene, 1979).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from ._aggregation import dawid_skene as _dawid_skene
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
        n_samples = Z.shape[0] if hasattr(Z, "shape") else len(Z)
        return np.full(n_samples, missing_label, dtype=object if missing_label is None else None)
    votes = annotations.votes(len(classes_))
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


def long_to_matrix(
    data, *, task="task", worker="worker", label="label", tasks=None, workers=None, missing_label=None
):
    """Pivot long-format annotations into an annotation matrix.

    Parameters
    ----------
    data : DataFrame
        One row per annotation, with columns ``task``, ``worker`` and ``label``.
    task : str, default="task"
        Name of the column of task ids.
    worker : str, default="worker"
        Name of the column of worker (annotator) ids.
    label : str, default="label"
        Name of the column of labels.
    tasks : array-like of shape (n_samples,), default=None
        Row order of the result, e.g. ``X.index`` to align ``Z`` with the
        instances; tasks nobody labelled get a row of NaN. By default the
        tasks in order of first appearance in ``data``, which is rarely the
        row order of ``X``: ``fit`` pairs the rows of ``X`` and ``Z`` by
        position, so pass ``tasks=X.index`` (or align afterwards with
        ``Z.reindex(X.index)``) whenever ``X`` is indexed by task.
    workers : array-like of shape (n_annotators,), default=None
        Column order of the result; workers without labels get a column of
        NaN. By default the workers in order of first appearance.
    missing_label : int, str or None, default=None
        Value of the entries without a label; None leaves them NaN. An int
        for integer labels (the matrix is then of dtype int64) or a string
        for string labels (every entry is then a string) gives a matrix
        that scikit-learn's ``check_cv`` accepts, so that an int ``cv``
        works in ``cross_val_score`` and ``GridSearchCV`` (it raises on NaN
        in ``Z``). Pass the same value as the estimator's
        ``missing_label``. It must differ from every label.

    Returns
    -------
    Z : DataFrame of shape (n_samples, n_annotators)
        Indexed by task, one column per worker, NaN (or ``missing_label``)
        where a worker did not label a task. Labels keep their type: integer labels become floats
        next to the NaN (exact up to 2**53; beyond that they are kept in a
        nullable integer column), bools stay bools. Pass it to ``fit`` as
        is: the workers become the estimator's ``annotator_names_``. Its
        rows follow ``tasks``; see there for aligning them with ``X``.

    Raises
    ------
    ValueError
        If a column is missing, a worker labelled a task twice, ``data``
        has tasks or workers that ``tasks`` / ``workers`` leave out, or
        ``missing_label`` is a label or of another type than the labels.

    Examples
    --------
    >>> import pandas as pd
    >>> from skannot.annotations import long_to_matrix
    >>> data = pd.DataFrame(
    ...     {"task": ["t1", "t1", "t2"], "worker": ["w1", "w2", "w2"], "label": ["cat", "dog", "dog"]}
    ... )
    >>> long_to_matrix(data)  # doctest: +NORMALIZE_WHITESPACE
    worker   w1   w2
    task
    t1      cat  dog
    t2      NaN  dog
    >>> long_to_matrix(data, missing_label="")  # doctest: +NORMALIZE_WHITESPACE
    worker   w1   w2
    task
    t1      cat  dog
    t2           dog
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame in long format; got {type(data).__name__}.")
    absent = [name for name in (task, worker, label) if name not in data.columns]
    if absent:
        raise ValueError(
            f"data has no column(s) {absent}; its columns are {list(data.columns)}. Name the "
            "task, worker and label columns with the task=, worker= and label= arguments."
        )
    repeated = data.duplicated([task, worker])
    if repeated.any():
        first = data.loc[repeated, [task, worker]].iloc[0].tolist()
        raise ValueError(
            f"{int(repeated.sum())} (task, worker) pair(s) occur more than once, e.g. {first}; "
            "a matrix holds one label per worker and task. Drop or aggregate the repeats first."
        )
    row_index = _axis(data[task], tasks, "tasks")
    col_index = _axis(data[worker], workers, "workers")
    labels = data[label]
    if isinstance(labels.dtype, np.dtype) and labels.dtype.kind in "iu" and len(labels):
        if labels.abs().max() > 2**53:
            # The NaN of the pivot would turn these into float64, which merges neighbouring ids.
            data = data.astype({label: "UInt64" if labels.dtype.kind == "u" else "Int64"})
    Z = data.pivot(index=task, columns=worker, values=label).reindex(index=row_index, columns=col_index)
    Z.index.name, Z.columns.name = task, worker
    if missing_label is not None:
        Z = _fill_missing(Z, data[label], missing_label)
    return Z


def _fill_missing(Z, labels, missing_label):
    """``Z`` with ``missing_label`` in its NaN entries, of one label type throughout."""
    observed = labels.dropna()
    if (observed == missing_label).any():
        raise ValueError(
            f"missing_label={missing_label!r} is one of the labels; choose a value that no annotation has."
        )
    integer = pd.api.types.is_integer_dtype(labels.dtype) and not pd.api.types.is_bool_dtype(labels.dtype)
    if integer:
        if not (isinstance(missing_label, Integral) and not isinstance(missing_label, bool)):
            raise ValueError(
                f"The labels are integers, so missing_label must be an int (e.g. -1); got {missing_label!r}."
            )
        return Z.fillna(missing_label).astype(np.int64)
    if all(isinstance(value, str) for value in observed):
        if not isinstance(missing_label, str):
            raise ValueError(
                f'The labels are strings, so missing_label must be a string (e.g. ""); got '
                f"{missing_label!r}: scikit-learn cannot sort a mix of strings and numbers."
            )
        return Z.astype(object).where(Z.notna(), missing_label)
    raise ValueError(
        f"missing_label works with integer or string labels; the labels are of dtype {labels.dtype}. "
        "Leave missing_label=None (NaN for missing) and pass a splitter such as "
        "skannot.model_selection.AnnotationStratifiedKFold as cv."
    )


def _axis(values, order, name):
    """The index of one axis of the matrix, checking that it covers ``values``."""
    if order is None:
        return pd.Index(pd.unique(values), name=values.name)
    index = pd.Index(order, name=values.name)
    if index.has_duplicates:
        raise ValueError(f"{name} contains duplicates.")
    left_out = pd.unique(values[~values.isin(index)])
    if len(left_out):
        raise ValueError(
            f"data has {len(left_out)} {name} not in the given {name}, e.g. {left_out[:3].tolist()}; "
            f"add them or drop their rows from data."
        )
    return index


def matrix_to_long(Z, *, missing_label=-1, task="task", worker="worker", label="label"):
    """List the observed entries of an annotation matrix in long format.

    Parameters
    ----------
    Z : array-like or DataFrame of shape (n_samples, n_annotators)
        Annotations, ``missing_label`` (or NaN/None) where missing. The index
        and columns of a DataFrame name the tasks and workers; otherwise they
        are the row and column numbers.
    missing_label : scalar, str or None, default=-1
        Marks a missing annotation.
    task : str, default="task"
        Name of the result's column of task ids.
    worker : str, default="worker"
        Name of the result's column of worker ids.
    label : str, default="label"
        Name of the result's column of labels.

    Returns
    -------
    data : DataFrame of shape (n_labels, 3)
        One row per observed label, ordered by task, then worker column.
        Integral float labels (from a matrix with NaN) come back as ints.

    Examples
    --------
    >>> from skannot.annotations import matrix_to_long
    >>> matrix_to_long([[0, -1], [1, 1]])
       task  worker  label
    0     0       0      0
    1     1       0      1
    2     1       1      1
    """
    annotations, classes, _ = check_annotations(Z, missing_label=missing_label)
    if isinstance(Z, pd.Series):
        Z = Z.to_frame()
    if isinstance(Z, pd.DataFrame):
        tasks, workers = Z.index.to_numpy(), Z.columns.to_numpy()
    else:
        tasks, workers = np.arange(annotations.n_samples), np.arange(annotations.n_annotators)
    return pd.DataFrame(
        {
            task: tasks[annotations.samples],
            worker: workers[annotations.annotators],
            label: classes[annotations.labels],
        }
    )


def dawid_skene(Z, *, missing_label=-1, classes=None, max_iter=100, tol=1e-6, smoothing=0.01):
    """Posterior of each sample's true class under the Dawid-Skene model.

    Every annotator gets a confusion matrix, ``P(label l | true class k)``,
    and the classes a prior; both are estimated by EM from the labels alone,
    starting from the majority-vote shares (Dawid & Skene, 1979, Maximum
    likelihood estimation of observer error-rates using the EM algorithm,
    *J. R. Stat. Soc. C* 28(1)). Unlike majority vote, an annotator's label
    counts for as much as its estimated reliability, and an annotator who
    systematically swaps two classes still informs the result. The
    result depends on ``Z`` only; there is no random initialisation.

    Parameters
    ----------
    Z : array-like, DataFrame or scipy sparse matrix of shape (n_samples, n_annotators) or (n_samples,)
        Annotations, ``missing_label`` (or NaN/None) where missing.
    missing_label : scalar, str or None, default=-1
        Marks a missing annotation.
    classes : array-like of shape (n_classes,), default=None
        All class labels; by default the observed ones.
    max_iter : int, default=100
        Largest number of EM iterations.
    tol : float, default=1e-6
        EM stops when its objective, divided by the number of observed
        labels, changes by less than ``tol``.
    smoothing : float, default=0.01
        Pseudo-count added to every confusion cell and class prior in each
        M-step, which keeps annotators with few labels from looking
        infallible; this is where the estimate departs from the paper's
        maximum likelihood, which ``smoothing=0`` gives.

    Returns
    -------
    posteriors : ndarray of shape (n_samples, n_classes)
        ``P(true class | labels)`` of each sample; rows sum to 1. Columns
        follow the sorted classes: ``np.unique`` of the observed labels, or
        the sorted ``classes``. Samples without labels get the estimated
        class proportions.

    Raises
    ------
    ValueError
        If ``Z`` has no observed label or a parameter is out of range.

    See Also
    --------
    majority_vote : The most frequent label of each sample.

    Examples
    --------
    Annotator 2 is wrong on the first two samples and outvoted; the third
    sample has no label and gets the class proportions:

    >>> import numpy as np
    >>> from skannot.annotations import dawid_skene
    >>> Z = [["a", "a", "b"], ["b", "b", "a"], [None, None, None], ["a", "a", "a"]]
    >>> posteriors = dawid_skene(Z, missing_label=None)
    >>> posteriors.shape
    (4, 2)
    >>> posteriors.argmax(axis=1)
    array([0, 1, 0, 0])
    >>> bool(np.allclose(posteriors.sum(axis=1), 1.0))
    True
    """
    annotations, classes_, _ = check_annotations(Z, missing_label=missing_label, classes=classes)
    result = _dawid_skene(annotations, len(classes_), max_iter=max_iter, tol=tol, smoothing=smoothing)
    return result.posteriors
