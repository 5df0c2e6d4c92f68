"""Turn user annotations into the compact form the estimator trains on.

Annotations arrive as a dense matrix ``Z`` of shape (n_samples, n_annotators)
(numpy array of ints, floats, strings or objects, a list of lists, or a pandas
DataFrame), as a scipy sparse matrix whose stored entries are the labels, or
as a 1-D ``y`` for a single annotator. Internally only the
*observed* entries are kept, in compressed sparse row (CSR) order, so memory
and training cost grow with the number of labels and not with
n_samples x n_annotators.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy import sparse


@dataclass(frozen=True)
class Annotations:
    """Observed labels of an annotation matrix in CSR order.

    Attributes
    ----------
    indptr : ndarray of shape (n_samples + 1,)
        The labels of sample ``i`` are at positions ``indptr[i]:indptr[i + 1]``.
    annotators : ndarray of shape (n_labels,)
        Annotator (column) index of each observed label.
    labels : ndarray of shape (n_labels,)
        Class index (into ``classes``) of each observed label.
    n_annotators : int
        Number of annotator columns, labelled or not.
    """

    indptr: np.ndarray
    annotators: np.ndarray
    labels: np.ndarray
    n_annotators: int

    @property
    def n_samples(self):
        return len(self.indptr) - 1

    @property
    def n_labels(self):
        return len(self.labels)

    @property
    def samples(self):
        """Sample (row) index of each observed label, shape (n_labels,)."""
        return np.repeat(np.arange(self.n_samples), np.diff(self.indptr))

    def labels_per_annotator(self):
        """Number of observed labels of each annotator, shape (n_annotators,)."""
        return np.bincount(self.annotators, minlength=self.n_annotators)

    def votes(self, n_classes):
        """Number of labels of each class per sample, shape (n_samples, n_classes)."""
        counts = np.zeros((self.n_samples, n_classes))
        np.add.at(counts, (self.samples, self.labels), 1.0)
        return counts

    def subset(self, rows):
        """Annotations of the samples ``rows`` (an integer index array)."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(self.indptr)[rows]
        starts = self.indptr[rows]
        positions = np.repeat(starts - np.cumsum(counts) + counts, counts)
        positions += np.arange(counts.sum())
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Annotations(indptr, self.annotators[positions], self.labels[positions], self.n_annotators)


def _is_missing_scalar_nan(value):
    """Whether ``missing_label`` is one of the values that are missing anyway (None, NaN, pandas.NA)."""
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def _check_missing_label(missing_label):
    if not pd.api.types.is_scalar(missing_label):
        raise ValueError(
            f"missing_label={missing_label!r} must be a single value that marks a missing annotation "
            "(a number, a string, None, NaN or pandas.NA); NaN, None and pandas.NA entries are missing "
            "in any case."
        )


def _missing_mask(values, missing_label):
    """Boolean mask of missing entries of a numpy array."""
    _check_missing_label(missing_label)
    if values.dtype.kind == "f":
        mask = np.isnan(values)
        if not _is_missing_scalar_nan(missing_label):
            mask |= values == missing_label
        return mask
    if values.dtype.kind == "O":
        mask = pd.isna(values)
        if not _is_missing_scalar_nan(missing_label):
            # Compare the present entries only: pandas.NA == x is neither True nor False.
            present = ~mask
            mask[present] = values[present] == missing_label
        return mask
    if _is_missing_scalar_nan(missing_label):
        return np.zeros(values.shape, dtype=bool)
    if values.dtype.kind in "iub" and not isinstance(missing_label, (Integral, Real)):
        return np.zeros(values.shape, dtype=bool)
    if values.dtype.kind in "US" and not isinstance(missing_label, str):
        return np.zeros(values.shape, dtype=bool)
    return values == missing_label


#: float64 holds every integer up to this magnitude exactly.
_EXACT_FLOAT_INTEGER = 2**53


def _dataframe_labels(Z):
    """The labels of a DataFrame as a 2-D numpy array, integer labels kept exact."""
    dtypes = list(Z.dtypes)
    if not all(pd.api.types.is_numeric_dtype(d) and not pd.api.types.is_bool_dtype(d) for d in dtypes):
        return Z.to_numpy(dtype=object)
    if all(isinstance(d, np.dtype) and d.kind in "iu" for d in dtypes):
        values = Z.to_numpy()
        if values.dtype.kind in "iu":
            return values
    integers = Z.select_dtypes("integer")
    # Column extremes may come back as floats (NA for an empty column, which any() skips);
    # rounding keeps every |label| >= 2**53 at or beyond the bound.
    beyond = (integers.max() >= _EXACT_FLOAT_INTEGER).any() or (integers.min() <= -_EXACT_FLOAT_INTEGER).any()
    if not beyond:
        return Z.to_numpy(dtype=float, na_value=np.nan)
    # Labels beyond 2**53 would merge as float64; Python ints keep them apart.
    return Z.to_numpy(dtype=object, na_value=None)


def _as_label_array(Z):
    """Return ``Z`` as a 2-D numpy array plus annotator names (or None)."""
    names = None
    if isinstance(Z, pd.Series):
        Z = Z.to_frame()
    if isinstance(Z, pd.DataFrame):
        names = np.asarray(Z.columns, dtype=object)
        Z = _dataframe_labels(Z)
    else:
        try:
            Z = np.asarray(Z)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"Z cannot be read as an annotation matrix ({exc}); pass an array, list of lists or "
                "DataFrame of shape (n_samples, n_annotators) holding one label (or a missing value) "
                "per entry, without lists or other containers as entries."
            ) from exc
    if Z.ndim == 1:
        Z = Z.reshape(-1, 1)
    return Z, names


def _label_kind(value):
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, (Integral, Real)):
        return "numeric"
    return "other"


def _labels_from_objects(values, name):
    """An object array of labels as an array of strings, bools, ints or floats, refusing anything else."""
    inferred = pd.api.types.infer_dtype(values, skipna=False)
    if inferred == "empty":
        return values.astype(float)
    if inferred == "string":
        return values.astype(str)
    if inferred == "bytes":
        return values.astype(bytes)
    if inferred == "boolean":
        return values.astype(bool)
    if inferred == "integer":
        return _exact_integers(values, name)
    if inferred == "floating":
        return values.astype(float)
    if inferred == "mixed-integer-float":
        floats = values.astype(float)
        if np.all(np.isfinite(floats)) and np.all(floats == np.round(floats)):
            # Integral floats next to ints beyond 2**53: convert the labels one by one, exactly.
            return _exact_integers(np.array([int(v) for v in values], dtype=object), name)
        return floats
    kinds = {}
    for value in values:
        kinds.setdefault(_label_kind(value), value)
    if "other" in kinds:
        example = kinds["other"]
        raise ValueError(
            f"{name} contains a label of type {type(example).__name__} ({example!r}); labels must be "
            "integers, strings or booleans, with None or NaN where a label is missing."
        )
    if "string" in kinds or "bytes" in kinds:
        text = kinds.get("string", kinds.get("bytes"))
        other = next(v for k, v in kinds.items() if k not in ("string", "bytes"))
        raise ValueError(
            f"{name} mixes string and numeric labels (such as {text!r} and {other!r}). Convert the "
            "observed labels to one type and leave the missing entries as they are, e.g. for an "
            "array: observed = ~pd.isna(Z) & (Z != missing_label); Z[observed] = "
            "Z[observed].astype(str). (Z.astype(str) on the whole Z would turn None, NaN and -1 "
            "into the classes 'None', 'nan' and '-1'.)"
        )
    raise ValueError(
        f"{name} mixes boolean and numeric labels (such as {kinds['bool']!r} and {kinds['numeric']!r}); "
        "use one type for all labels, e.g. 0 and 1 in place of False and True."
    )


def _exact_integers(values, name):
    integers = values.tolist()
    for dtype in (np.int64, np.uint64):
        try:
            return np.array(integers, dtype=dtype)
        except OverflowError:
            pass
    raise ValueError(
        f"{name} contains integer labels that no 64-bit integer type holds together (beyond 2**64, "
        "or negative ones next to ones beyond 2**63); use strings for such ids."
    )


def _observed_classes(values, name="Z"):
    """Observed labels as strings, bools or ints, refusing mixed types and fractional floats."""
    if values.dtype.kind == "O":
        values = _labels_from_objects(values, name)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} contains infinite labels; mark missing labels with NaN.")
        if np.any(values != np.round(values)):
            raise ValueError(
                f"{name} contains non-integral float labels such as "
                f"{values[values != np.round(values)][0].item()!r} (a continuous target?); class "
                "labels must be integers or strings."
            )
        values = values.astype(np.int64)
    return values


def check_annotations(Z, *, missing_label=-1, classes=None, n_samples=None):
    """Validate an annotation matrix and extract its observed labels.

    Parameters
    ----------
    Z : array-like, DataFrame or scipy sparse matrix of shape (n_samples, n_annotators) or (n_samples,)
        Annotations; a 1-D array is a single annotator. In a scipy sparse
        matrix the *stored* entries are the labels (an explicitly stored 0 is
        the label 0), every entry not stored is missing, and stored missing
        values are refused; it is never converted to a dense matrix. Labels
        are integers (kept exact, also beyond 2**53 in a DataFrame), integral
        floats, strings or booleans (``classes_`` then stays boolean); one
        type for all labels.
    missing_label : scalar, str, None, float("nan") or pandas.NA, default=-1
        Value that marks a missing annotation. NaN, None and ``pandas.NA``
        entries are treated as missing in float and object arrays in any
        case; passing one of them means that only those are missing. String
        labels that look like a missing entry turned into text (``'-1'`` for
        the default, ``'nan'``, ``'None'``, ``'<NA>'``) are refused unless
        ``classes`` lists them or ``missing_label`` names them.
    classes : array-like of shape (n_classes,), default=None
        All class labels, of the labels' type and without missing values. If
        None, the sorted observed labels are used.
    n_samples : int, default=None
        If given, the number of rows ``Z`` must have.

    Returns
    -------
    annotations : Annotations
        The observed labels in CSR order, with class indices into ``classes_``.
    classes_ : ndarray of shape (n_classes,)
        Sorted class labels.
    annotator_names : ndarray of shape (n_annotators,) or None
        Column names when ``Z`` is a DataFrame.
    """
    if Z is None:
        raise ValueError("Z is None; pass the annotation matrix of shape (n_samples, n_annotators).")
    if sparse.issparse(Z):
        coo = Z.tocoo()
        _check_shape(coo.shape, n_samples)
        if _missing_mask(coo.data, missing_label).any():
            # scipy drops the zeros of a dense matrix it converts, so stored
            # missing values mean the label 0 has most likely been lost.
            raise ValueError(
                f"Z is a sparse matrix that stores missing values (missing_label={missing_label!r} "
                "or NaN). In a sparse Z every stored entry is a label and entries not stored "
                "are missing; converting a dense Z with scipy drops its 0 labels. Build it from "
                "the observed labels, e.g. csr_matrix((Z[Z != -1], np.nonzero(Z != -1)), shape=Z.shape)."
            )
        annotations, classes_ = annotations_from_coordinates(
            coo.row, coo.col, coo.data, shape=coo.shape, missing_label=missing_label, classes=classes
        )
        return annotations, classes_, None
    Z, names = _as_label_array(Z)
    _check_shape(Z.shape, n_samples)
    if Z.dtype.kind not in "iufOUSb":
        raise ValueError(f"Z has dtype {Z.dtype}; labels must be integers, floats or strings.")
    rows, cols = np.nonzero(~_missing_mask(Z, missing_label))
    annotations, classes_ = annotations_from_coordinates(
        rows, cols, Z[rows, cols], shape=Z.shape, missing_label=missing_label, classes=classes
    )
    return annotations, classes_, names


def _check_shape(shape, n_samples):
    if len(shape) != 2:
        raise ValueError(
            f"Z must be 1-D (one annotator) or 2-D (n_samples, n_annotators); got "
            f"an array with {len(shape)} dimensions and shape {shape}."
        )
    if n_samples is not None and shape[0] != n_samples:
        raise ValueError(
            f"X has {n_samples} samples but Z has {shape[0]} rows; each row of Z "
            "must hold the annotations of the sample in the same row of X."
        )
    if shape[1] == 0:
        raise ValueError("Z has no annotator columns.")


def annotations_from_coordinates(samples, annotators, values, *, shape, missing_label=-1, classes=None):
    """Build :class:`Annotations` from one (sample, annotator, label) triple per label.

    The shared back end of dense, sparse and long-format input: its memory
    grows with the number of triples, never with n_samples x n_annotators.
    Triples whose value is ``missing_label`` (or NaN/None) are dropped.

    Parameters
    ----------
    samples, annotators : array-like of int of shape (n_triples,)
        Row and column of each label in the annotation matrix, in any order.
    values : array-like of shape (n_triples,)
        The labels (ints, integral floats or strings).
    shape : tuple of (int, int)
        ``(n_samples, n_annotators)`` of the annotation matrix.
    missing_label : scalar, str, None or float("nan"), default=-1
        Value that marks a missing annotation.
    classes : array-like of shape (n_classes,), default=None
        All class labels. If None, the sorted observed labels are used.

    Returns
    -------
    annotations : Annotations
        The observed labels in CSR order.
    classes_ : ndarray of shape (n_classes,)
        Sorted class labels.
    """
    n_samples, n_annotators = (int(n) for n in shape)
    samples = np.asarray(samples).astype(np.int64, copy=False).ravel()
    annotators = np.asarray(annotators).astype(np.int64, copy=False).ravel()
    values = np.asarray(values).ravel()
    if not len(samples) == len(annotators) == len(values):
        raise ValueError(
            f"samples, annotators and values must have one entry per label; got lengths "
            f"{len(samples)}, {len(annotators)} and {len(values)}."
        )
    for name, index, size in (("sample", samples, n_samples), ("annotator", annotators, n_annotators)):
        if len(index) and (index.min() < 0 or index.max() >= size):
            raise ValueError(f"{name} indices must lie in [0, {size}); got values outside.")
    observed = ~_missing_mask(values, missing_label)
    if not observed.all():
        samples, annotators, values = samples[observed], annotators[observed], values[observed]
    if len(values) == 0:
        raise ValueError(
            f"Z has no observed label: every entry equals missing_label={missing_label!r} "
            "or is NaN/None. Check missing_label, or pass the annotations themselves."
        )
    key = samples * n_annotators + annotators
    if np.any(np.diff(key) <= 0):
        order = np.argsort(key, kind="stable")
        samples, annotators, values, key = samples[order], annotators[order], values[order], key[order]
        repeated = np.flatnonzero(np.diff(key) == 0)
        if len(repeated):
            i, m = samples[repeated[0]], annotators[repeated[0]]
            raise ValueError(
                f"Annotator {m} labels sample {i} more than once ({len(repeated)} repeated "
                "(sample, annotator) pairs); keep one label per pair."
            )
    values = _observed_classes(values)
    if classes is None:
        classes_ = np.unique(values)
        _refuse_missing_lookalikes(classes_, missing_label)
    else:
        classes_ = _check_classes(classes, values)
    if not _is_missing_scalar_nan(missing_label) and np.isin(missing_label, classes_).any():
        raise ValueError(
            f"missing_label={missing_label!r} is also a class label; choose a "
            "missing_label that no annotator uses."
        )
    labels = np.searchsorted(classes_, values).astype(np.int64)
    indptr = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(np.bincount(samples, minlength=n_samples), out=indptr[1:])
    return Annotations(indptr, annotators, labels, n_annotators), classes_


def _refuse_missing_lookalikes(classes_, missing_label):
    """Refuse string classes such as '-1' or 'nan': missing entries turned into text."""
    if classes_.dtype.kind != "U":
        return
    suspects = []
    if isinstance(missing_label, Real) and not isinstance(missing_label, (bool, np.bool_)):
        if not _is_missing_scalar_nan(missing_label):
            suspects += [str(missing_label), str(float(missing_label))]
    suspects += ["nan", "NaN", "None", "<NA>"]
    found = [text for text, present in zip(suspects, np.isin(suspects, classes_)) if present]
    if found:
        raise ValueError(
            f"Z holds {' and '.join(map(repr, found))} as string labels, which look like missing "
            f"entries turned into text (e.g. by Z.astype(str)), while missing_label={missing_label!r}. "
            f"If {found[0]!r} marks missing labels, pass missing_label={found[0]!r}; if the strings "
            "came from a conversion, convert only the observed labels; if it is a real class, pass "
            "classes=[...] listing every class."
        )


def _check_classes(classes, values):
    """``classes`` as a sorted array of labels of the same type as the observed ``values``."""
    classes_ = np.asarray(classes)
    if classes_.ndim != 1 or len(classes_) == 0:
        raise ValueError("classes must be a non-empty 1-D array of class labels.")
    if classes_.dtype.kind in "fO" and pd.isna(classes_).any():
        raise ValueError(
            f"classes={classes_.tolist()} contains a missing value; list the class labels only "
            "(missing entries of Z are marked by missing_label, NaN or None)."
        )
    if classes_.dtype.kind == "O":
        classes_ = _observed_classes(classes_, name="classes")
    elif classes_.dtype.kind not in "iufUSb":
        raise ValueError(
            f"classes has dtype {classes_.dtype}; class labels must be integers, strings or booleans."
        )
    if len(np.unique(classes_)) != len(classes_):
        raise ValueError(f"classes contains duplicates: {classes_!r}.")
    classes_ = np.sort(classes_)
    is_text = values.dtype.kind in "US"
    if is_text != (classes_.dtype.kind in "US"):
        raise ValueError(
            f"Z holds {'string' if is_text else 'numeric'} labels but classes are "
            f"{'numeric' if is_text else 'strings'}, so the labels are not in classes="
            f"{classes_.tolist()}; give classes of the labels' type."
        )
    unknown = np.setdiff1d(values, classes_)
    if len(unknown):
        raise ValueError(
            f"Z contains labels {unknown[:5].tolist()} that are not in classes="
            f"{classes_.tolist()}; add them to classes or mark them as missing."
        )
    return classes_


def _carried_index(data):
    """The index of a pandas object, or None for other input or a default ``RangeIndex``."""
    if not isinstance(data, (pd.DataFrame, pd.Series)):
        return None
    index = data.index
    # A default 0..n-1 index says nothing beyond the position (numpy-built data gets one).
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return None
    return index


def _plain(value):
    """A numpy scalar as the Python value, so that messages show ``3``, not ``np.int64(3)``."""
    return value.item() if isinstance(value, np.generic) else value


def check_sample_weight(sample_weight, n_samples):
    """One weight per sample (row of Z), checked; None without weights.

    Parameters
    ----------
    sample_weight : array-like of shape (n_samples,), float or None
        A single number weighs every sample the same.
    n_samples : int
        Number of rows of Z.

    Returns
    -------
    weights : ndarray of shape (n_samples,), float64, or None

    Raises
    ------
    ValueError
        When the weights are not numbers, not one per sample, not finite or
        negative.
    """
    if sample_weight is None:
        return None
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample_weight must be an array of numbers ({exc}).") from exc
    if weights.ndim == 0:
        weights = np.full(n_samples, float(weights))
    if weights.shape != (n_samples,):
        raise ValueError(
            f"sample_weight has shape {weights.shape} but Z has {n_samples} rows; "
            f"pass one weight per sample (row of Z), shape ({n_samples},)."
        )
    if not (np.isfinite(weights).all() and (weights >= 0).all()):
        raise ValueError(
            "sample_weight must hold finite, non-negative numbers; a weight of 0 leaves a sample out."
        )
    return weights


def check_aligned_index(X, Z):
    """Refuse a DataFrame ``X`` and ``Z`` whose indexes would pair the wrong rows.

    ``fit`` pairs row ``i`` of ``X`` with row ``i`` of ``Z``, by position. When
    both are pandas objects carrying an index and the two indexes differ,
    that pairing gives samples another sample's annotations without a word:
    :func:`skannot.annotations.long_to_matrix`, for example, orders the tasks
    by first appearance, which is rarely the row order of ``X``. So a
    difference, be it the same labels in another order or other labels, is
    an error that says how to align them. Nothing is checked when either
    side is not a pandas object or has a default ``RangeIndex``
    (0, 1, ..., n - 1), which stands for the position, or when the lengths
    differ (the row-count check reports that).

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_samples, n_features)
        Instances.
    Z : array-like, DataFrame or Series of shape (n_samples, n_annotators) or (n_samples,)
        Annotations.

    Raises
    ------
    ValueError
        If both carry an index and the indexes differ.

    Examples
    --------
    >>> import pandas as pd
    >>> from skannot._validation import check_aligned_index
    >>> X = pd.DataFrame({"x": [0.1, 0.2]}, index=["t1", "t2"])
    >>> Z = pd.DataFrame({"ann": [1, 0]}, index=["t2", "t1"])
    >>> check_aligned_index(X, Z.loc[X.index])
    >>> check_aligned_index(X, Z)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: X and Z hold the same index labels in another order (row 0 of X is 't1' ...
    """
    x_index, z_index = _carried_index(X), _carried_index(Z)
    if x_index is None or z_index is None or len(x_index) != len(z_index) or x_index.equals(z_index):
        return
    row = next((i for i, (x, z) in enumerate(zip(x_index, z_index)) if x != z), None)
    if row is None:  # equal labels, held in indexes of other dtypes
        return
    if x_index.isin(z_index).all() and z_index.isin(x_index).all():
        raise ValueError(
            f"X and Z hold the same index labels in another order (row {row} of X is "
            f"{_plain(x_index[row])!r} but row {row} of Z is {_plain(z_index[row])!r}); fit "
            "pairs their rows by position, so samples would get another sample's annotations. "
            "Align Z with X first: Z = Z.loc[X.index], or build it with "
            "long_to_matrix(..., tasks=X.index)."
        )
    examples = [
        f"{name} has {_plain(own[~own.isin(other)][0])!r}, not in {other_name}"
        for name, own, other_name, other in (("X", x_index, "Z", z_index), ("Z", z_index, "X", x_index))
        if not own.isin(other).all()
    ]
    example = "; ".join(examples)
    raise ValueError(
        f"The indexes of X and Z hold different labels ({example}); fit pairs their rows by "
        "position, so samples may get another sample's annotations. Align Z with X first: "
        "Z = Z.reindex(X.index) (a row of NaN for each sample nobody labelled), or, if the rows "
        "do pair by position, drop both indexes with reset_index(drop=True)."
    )
