"""Training and prediction on data that stays on disk.

:meth:`AnnotMixClassifier.fit` also accepts, instead of ``(X, Z)``, a torch
``Dataset`` whose item ``i`` is ``(x_i, z_i)``: a feature vector and that
sample's annotation row (``missing_label`` where an annotator gave no label).
Only the observed labels are gathered into memory, in compressed sparse row
form (:class:`~skannot._validation.Annotations`), which is small next to the
features. The features are read batch by batch while training, through
:class:`DatasetRows`, which the training code indexes like a tensor.

Datasets holding whole arrays are read by slicing those arrays: a
:class:`skorch.dataset.Dataset` ``(X, Z)`` or a
:class:`torch.utils.data.TensorDataset` ``(X, Z)`` over numpy arrays,
``np.memmap`` files or tensors. Any other dataset is read item by item, or
through its ``__getitems__(indices)`` when it has one.
"""

from __future__ import annotations

import numpy as np
import torch
from skorch.dataset import Dataset as SkorchDataset
from torch.utils.data import TensorDataset

from ._validation import _missing_mask, _observed_classes, annotations_from_coordinates

#: Rows per read when scanning the annotation rows.
_SCAN_ROWS = 1 << 16


def _arrays(dataset):
    """The ``(X, Z)`` arrays behind ``dataset``, or None when it must be read by items."""
    if isinstance(dataset, SkorchDataset) and isinstance(dataset.X, (np.ndarray, torch.Tensor)):
        return dataset.X, dataset.y
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) in (1, 2):
        return dataset.tensors[0], (dataset.tensors[1] if len(dataset.tensors) == 2 else None)
    return None


def _items(dataset, index):
    """Items ``index`` of ``dataset``, in one ``__getitems__`` call when it has one."""
    getitems = getattr(dataset, "__getitems__", None)
    if callable(getitems):
        return getitems([int(i) for i in index])
    return [dataset[int(i)] for i in index]


def _features_of(item):
    return item[0] if isinstance(item, (tuple, list)) else item


def _annotations_of(item):
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise ValueError(
            "A training Dataset must yield (x, annotation_row) pairs; got an item of type "
            f"{type(item).__name__}. Wrap features and annotations as skorch.dataset.Dataset(X, Z)."
        )
    return item[1]


def _numpy(values, dtype=None):
    if isinstance(values, torch.Tensor):
        values = values.numpy(force=True)
    return np.asarray(values, dtype=dtype)


class DatasetRows:
    """Feature rows of a Dataset, read on demand and indexed like a float32 tensor.

    Reads sort the requested rows (sequential access on memory-mapped files)
    and return them in the requested order, so training sees exactly the
    batches it would see with the features in memory.

    Parameters
    ----------
    dataset : torch Dataset
        Items are ``x`` or ``(x, annotation_row)``; ``x`` a vector of n_features.
    rows : ndarray of int of shape (n_rows,), default=None
        Dataset positions of the rows this object exposes; all by default.
    """

    def __init__(self, dataset, rows=None):
        self.dataset = dataset
        self.rows = rows
        arrays = _arrays(dataset)
        self._X = None if arrays is None else arrays[0]
        n_total = len(dataset)
        if n_total == 0:
            raise ValueError("The Dataset is empty; it needs at least one (x, annotation_row) item.")
        first = self._read(np.zeros(1, dtype=np.int64))
        self.n_features = first.shape[1]

    def __len__(self):
        return len(self.dataset) if self.rows is None else len(self.rows)

    @property
    def shape(self):
        return (len(self), self.n_features)

    def subset(self, rows):
        """The rows ``rows`` (positions into this object) as a new :class:`DatasetRows`."""
        rows = np.asarray(rows, dtype=np.int64)
        return DatasetRows(self.dataset, rows if self.rows is None else self.rows[rows])

    def __getitem__(self, key):
        """Rows ``key`` (a slice, or an integer array or LongTensor) as a float32 tensor."""
        if isinstance(key, slice):
            positions = np.arange(len(self))[key]
        else:
            positions = _numpy(key, dtype=np.int64).reshape(-1)
        index = positions if self.rows is None else self.rows[positions]
        order = np.argsort(index, kind="stable")
        out = np.empty((len(index), getattr(self, "n_features", 0)), dtype=np.float32)
        if len(index):
            out[order] = self._read(index[order])
        return torch.from_numpy(out)

    def _read(self, index):
        """Rows at sorted dataset positions ``index`` as a checked (len(index), n_features) array."""
        if self._X is not None:
            data = self._X[torch.from_numpy(index) if isinstance(self._X, torch.Tensor) else index]
            data = _numpy(data, dtype=np.float32)
        else:
            data = np.stack(
                [_numpy(_features_of(item), dtype=np.float32) for item in _items(self.dataset, index)]
            )
        if data.ndim != 2:
            raise ValueError(
                f"Each x of the Dataset must be a 1-D feature vector; got x of shape {data.shape[1:]}."
            )
        if hasattr(self, "n_features") and data.shape[1] != self.n_features:
            raise ValueError(
                f"Dataset rows have {data.shape[1]} features where the first row has {self.n_features}."
            )
        if not np.isfinite(data).all():
            bad = int(index[np.flatnonzero(~np.isfinite(data).all(1))[0]])
            raise ValueError(f"Dataset row {bad} contains NaN or infinity; features must be finite.")
        return data


def _annotation_chunks(dataset):
    """Annotation rows of ``dataset`` as consecutive 2-D numpy chunks."""
    arrays = _arrays(dataset)
    if arrays is not None and arrays[1] is None:
        raise ValueError(
            "The Dataset has no annotations (y is None); build it as skorch.dataset.Dataset(X, Z)."
        )
    n = len(dataset)
    for start in range(0, n, _SCAN_ROWS):
        stop = min(n, start + _SCAN_ROWS)
        if arrays is not None:
            chunk = _numpy(arrays[1][start:stop])
        else:
            rows = [_numpy(_annotations_of(item)) for item in _items(dataset, range(start, stop))]
            try:
                chunk = np.stack(rows)
            except ValueError as exc:
                raise ValueError(
                    f"The annotation rows of Dataset items {start}..{stop - 1} differ in length; "
                    "every row must hold one entry per annotator."
                ) from exc
        yield chunk.reshape(-1, 1) if chunk.ndim == 1 else chunk


def read_crowd_dataset(dataset, *, missing_label=-1, classes=None):
    """Gather the observed labels of a Dataset and expose its features lazily.

    Parameters
    ----------
    dataset : torch Dataset of (x, annotation_row) items
        ``annotation_row`` has one entry per annotator (a scalar for a single
        annotator); ``missing_label``, NaN or None mark missing entries.
    missing_label : scalar, str or None, default=-1
    classes : array-like of shape (n_classes,), default=None
        All class labels; by default the labels observed in the dataset.

    Returns
    -------
    X : DatasetRows
        The features, read on demand.
    annotations : Annotations
        Observed labels in CSR order, as :func:`~skannot._validation.check_annotations`
        returns them for the full annotation matrix.
    classes_ : ndarray of shape (n_classes,)
    """
    X = DatasetRows(dataset)
    samples, annotators, values = [], [], []
    n_annotators, start = None, 0
    for chunk in _annotation_chunks(dataset):
        if chunk.ndim != 2:
            raise ValueError(f"Annotation rows must be 1-D; got rows of shape {chunk.shape[1:]}.")
        if n_annotators is None:
            n_annotators = chunk.shape[1]
        elif chunk.shape[1] != n_annotators:
            raise ValueError(
                f"Annotation rows hold {chunk.shape[1]} entries where earlier rows hold {n_annotators}; "
                "every row must hold one entry per annotator."
            )
        rows, cols = np.nonzero(~_missing_mask(chunk, missing_label))
        samples.append(rows + start)
        annotators.append(cols)
        values.append(_observed_classes(chunk[rows, cols]))
        start += len(chunk)
    if len({"str" if v.dtype.kind in "US" else "num" for v in values if len(v)}) > 1:
        raise ValueError("The annotations mix string and numeric labels; use one type for all labels.")
    annotations, classes_ = annotations_from_coordinates(
        np.concatenate(samples),
        np.concatenate(annotators),
        np.concatenate(values),
        shape=(len(dataset), n_annotators),
        missing_label=missing_label,
        classes=classes,
    )
    return X, annotations, classes_
