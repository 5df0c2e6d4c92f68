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
    return value is None or (isinstance(value, Real) and np.isnan(value))


def _missing_mask(values, missing_label):
    """Boolean mask of missing entries of a 2-D numpy array."""
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


def _as_label_array(Z):
    """Return ``Z`` as a 2-D numpy array plus annotator names (or None)."""
    names = None
    if isinstance(Z, pd.Series):
        Z = Z.to_frame()
    if isinstance(Z, pd.DataFrame):
        names = np.asarray(Z.columns, dtype=object)
        if all(
            pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
            for dtype in Z.dtypes
        ):
            Z = Z.to_numpy(dtype=float, na_value=np.nan)
        else:
            Z = Z.to_numpy(dtype=object)
    else:
        Z = np.asarray(Z)
    if Z.ndim == 1:
        Z = Z.reshape(-1, 1)
    return Z, names


def _observed_classes(values):
    """Sorted unique observed labels, refusing mixed types and fractional floats."""
    if values.dtype.kind == "O":
        kinds = {"str" if isinstance(v, str) else "num" for v in values}
        if len(kinds) > 1:
            raise ValueError(
                "Z mixes string and numeric labels; convert all labels to one type, "
                "for example with Z.astype(str)."
            )
        if kinds == {"num"}:
            values = values.astype(float)
        else:
            values = values.astype(str)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)):
            raise ValueError("Z contains infinite labels; mark missing labels with NaN.")
        if np.any(values != np.round(values)):
            raise ValueError(
                "Z contains non-integral float labels such as "
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
        values are refused; it is never converted to a dense matrix.
    missing_label : scalar, str, None or float("nan"), default=-1
        Value that marks a missing annotation. NaN, None and ``pandas.NA``
        entries are treated as missing in float and object arrays in any case.
    classes : array-like of shape (n_classes,), default=None
        All class labels. If None, the sorted observed labels are used.
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
    else:
        classes_ = np.asarray(classes)
        if classes_.ndim != 1 or len(classes_) == 0:
            raise ValueError("classes must be a non-empty 1-D array of class labels.")
        if len(np.unique(classes_)) != len(classes_):
            raise ValueError(f"classes contains duplicates: {classes_!r}.")
        classes_ = np.sort(classes_)
        if values.dtype.kind in "US" and classes_.dtype.kind not in "US":
            raise ValueError("Z holds string labels but classes are not strings.")
        unknown = np.setdiff1d(values, classes_)
        if len(unknown):
            raise ValueError(
                f"Z contains labels {unknown[:5].tolist()} that are not in classes="
                f"{classes_.tolist()}; add them to classes or mark them as missing."
            )
    if not _is_missing_scalar_nan(missing_label) and np.isin(missing_label, classes_).any():
        raise ValueError(
            f"missing_label={missing_label!r} is also a class label; choose a "
            "missing_label that no annotator uses."
        )
    labels = np.searchsorted(classes_, values).astype(np.int64)
    indptr = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(np.bincount(samples, minlength=n_samples), out=indptr[1:])
    return Annotations(indptr, annotators, labels, n_annotators), classes_
