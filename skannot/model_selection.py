"""Cross-validation on annotation matrices, where only noisy labels exist.

With an int ``cv`` and a 2-D ``Z``, scikit-learn's ``GridSearchCV`` and
``cross_val_score`` fall back to plain, unshuffled ``KFold`` (``check_cv``
stratifies only binary and multiclass 1-D targets), and ``StratifiedKFold``
refuses a 2-D ``Z``; an int ``cv`` even raises before any fit when ``Z``
marks missing entries with NaN ("Input y contains NaN") or is the string
matrix with NaN of :func:`skannot.annotations.long_to_matrix` (use its
``missing_label`` to get one that an int ``cv`` accepts).
:class:`AnnotationStratifiedKFold` works with every form of ``Z``: pass it
as ``cv``. It stratifies by the majority-vote label and guarantees that
every fold holds labels.
:func:`cross_val_predict` gives out-of-fold predictions, which scikit-learn's
function of that name cannot give for a 2-D ``Z``.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _num_samples, check_consistent_length

from ._validation import check_annotations
from .metrics import _final_estimator, _transform_for_final


class AnnotationStratifiedKFold(BaseCrossValidator):
    """K-fold splits that share out labelled samples and classes evenly.

    Samples are grouped by their majority-vote label (ties go to the first
    class in sorted order); samples without any label form a group of their
    own. Going through the groups in turn, samples are dealt to the folds one
    by one, so that

    - each test fold holds ``n_labelled // n_splits`` labelled samples or
      one more, hence at least one labelled sample (fewer labelled samples
      than folds raise a ``ValueError``);
    - each majority-vote class is spread over the folds to within one sample;
    - fold sizes differ by at most one.

    Parameters
    ----------
    n_splits : int >= 2, default=5
        Number of folds.
    shuffle : bool, default=False
        Shuffle the samples within each group before dealing them out;
        otherwise they keep their order in ``Z``.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffle; used only when ``shuffle=True``.
    missing_label : scalar, str or None, default=-1
        Marks a missing annotation in ``Z``; use the estimator's value.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot.model_selection import AnnotationStratifiedKFold
    >>> Z = np.array([[0, -1], [-1, -1], [1, 1], [0, 0], [-1, -1], [1, -1]])
    >>> for train, test in AnnotationStratifiedKFold(n_splits=2).split(np.zeros((6, 1)), Z):
    ...     print(test)
    [0 1 2]
    [3 4 5]
    """

    def __init__(self, n_splits=5, *, shuffle=False, random_state=None, missing_label=-1):
        # Validated here, as scikit-learn's splitters do: a splitter is not an estimator.
        if not isinstance(n_splits, Integral) or isinstance(n_splits, bool) or n_splits < 2:
            raise ValueError(f"n_splits={n_splits!r} must be an int of at least 2.")
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True or False; got {shuffle!r}.")
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state
        self.missing_label = missing_label

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of folds.

        Parameters
        ----------
        X : ignored
            Present for scikit-learn's splitter interface.
        y : ignored
            Present for scikit-learn's splitter interface.
        groups : ignored
            Present for scikit-learn's splitter interface.

        Returns
        -------
        n_splits : int
        """
        return self.n_splits

    def split(self, X, y, groups=None):
        """Indices of the training and test samples of each fold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Instances; only their number is used.
        y : array-like or DataFrame of shape (n_samples, n_annotators) or (n_samples,)
            The annotations ``Z`` (scikit-learn passes the target as ``y``).
        groups : ignored
            Present for scikit-learn's splitter interface.

        Yields
        ------
        train : ndarray of shape (n_train,)
        test : ndarray of shape (n_test,)
        """
        if y is None:
            raise ValueError(
                "AnnotationStratifiedKFold needs the annotations: call split(X, Z), or pass it as "
                "cv= to a search that is fitted with fit(X, Z)."
            )
        check_consistent_length(X, y)
        annotations, classes, _ = check_annotations(y, missing_label=self.missing_label)
        n_samples, n_classes = annotations.n_samples, len(classes)
        # The extra last class is the group of the samples without any label.
        votes = annotations.votes(n_classes + 1)
        unlabelled = np.diff(annotations.indptr) == 0
        votes[unlabelled, n_classes] = 1.0
        group = votes.argmax(1)
        n_labelled = n_samples - int(unlabelled.sum())
        if n_labelled < self.n_splits:
            raise ValueError(
                f"n_splits={self.n_splits} is more than the {n_labelled} samples with an observed "
                "label; every fold needs at least one. Use fewer splits."
            )
        if self.shuffle:
            permutation = check_random_state(self.random_state).permutation(n_samples)
            order = permutation[np.argsort(group[permutation], kind="stable")]
        else:
            order = np.argsort(group, kind="stable")
        fold = np.empty(n_samples, dtype=np.int64)
        fold[order] = np.arange(n_samples) % self.n_splits
        for k in range(self.n_splits):
            yield np.flatnonzero(fold != k), np.flatnonzero(fold == k)


#: The methods :func:`cross_val_predict` can call, and whether each also reads the held-out annotations.
_CV_METHODS = {
    "predict_proba": False,
    "predict": False,
    "predict_consensus_proba": True,
    "predict_consensus": True,
}


def cross_val_predict(
    estimator, X, Z, *, cv=5, method="predict_proba", n_jobs=None, verbose=0, pre_dispatch="2*n_jobs"
):
    """Out-of-fold predictions for every sample, from models that never saw it.

    scikit-learn's :func:`sklearn.model_selection.cross_val_predict` does not
    apply to an annotation matrix: for ``method="predict_proba"`` it
    label-encodes each column of a 2-D target on its own, so a missing
    marker becomes a class, the same label gets different codes in
    different columns, and the estimator is fitted on those codes; its
    result is not a (n_samples, n_classes) array of class probabilities
    (see ``docs/user_guide/model_selection.md``). This function fits a clone
    of ``estimator`` on the training part of each split with the
    annotations as they are, every clone with all classes of ``Z`` so that
    the columns agree across folds, and collects the predictions of each
    test part.

    Parameters
    ----------
    estimator : estimator of the family, or Pipeline ending in one
        Not fitted (clones are).
    X : array-like or DataFrame of shape (n_samples, n_features)
    Z : array-like, DataFrame or scipy sparse matrix of shape (n_samples, n_annotators) or (n_samples,)
        Annotations, the final estimator's ``missing_label`` (or NaN/None)
        where missing.
    cv : int or cross-validation splitter, default=5
        An int is the number of folds of an
        :class:`AnnotationStratifiedKFold` (shuffled with seed 0, so that the
        folds do not follow the row order). The test parts must partition the
        samples: each sample in exactly one.
    method : {"predict_proba", "predict", "predict_consensus_proba", "predict_consensus"}, \
default="predict_proba"
        What to predict for the held-out samples: ``p(y | x)`` or its mode,
        or the consensus given the held-out samples' own annotations as
        well (``predict_consensus_proba(X_test, Z_test)``).
    n_jobs : int, default=None
        Folds fitted in parallel (joblib); None is 1.
    verbose : int, default=0
        Verbosity of joblib.
    pre_dispatch : int or str, default="2*n_jobs"
        How many jobs joblib dispatches ahead.

    Returns
    -------
    predictions : ndarray of shape (n_samples, n_classes) or (n_samples,)
        Probabilities with columns in the order of the sorted classes of
        ``Z`` (or the estimator's ``classes``), or labels.

    Raises
    ------
    ValueError
        If ``method`` is unknown, a consensus method is asked of an
        estimator that has none, or the splits' test parts do not
        partition the samples.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot import AnnotMixClassifier
    >>> from skannot.model_selection import cross_val_predict
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> Z = np.where(rng.random((60, 3)) < 0.8, y[:, None], 1 - y[:, None])
    >>> proba = cross_val_predict(AnnotMixClassifier(max_epochs=2, random_state=0), X, Z, cv=3)
    >>> proba.shape
    (60, 2)
    """
    if method not in _CV_METHODS:
        raise ValueError(f"method={method!r} is not one of {sorted(_CV_METHODS)}.")
    final = _final_estimator(estimator)
    if _CV_METHODS[method] and not hasattr(final, method):
        raise ValueError(
            f"method={method!r} needs an estimator of the skannot family (or a Pipeline ending in one); "
            f"{type(final).__name__} has no {method}."
        )
    missing_label = getattr(final, "missing_label", -1)
    fixed_classes = getattr(final, "classes", None)
    _, classes, _ = check_annotations(Z, missing_label=missing_label, classes=fixed_classes)
    estimator = clone(estimator)
    if fixed_classes is None and "classes" in final.get_params():
        steps = getattr(estimator, "steps", None)
        key = "classes" if steps is None else f"{steps[-1][0]}__classes"
        estimator.set_params(**{key: classes})
    if isinstance(cv, Integral) and not isinstance(cv, bool):
        cv = AnnotationStratifiedKFold(cv, shuffle=True, random_state=0, missing_label=missing_label)
    splits = list(cv.split(X, Z))
    tested = np.concatenate([test for _, test in splits]) if splits else np.zeros(0, dtype=int)
    n_samples = _num_samples(X)
    if len(tested) != n_samples or not np.array_equal(np.sort(tested), np.arange(n_samples)):
        raise ValueError(
            "cross_val_predict needs splits whose test parts hold every sample exactly once (a "
            "partition, as KFold and AnnotationStratifiedKFold give); the splits of cv do not."
        )
    parallel = Parallel(n_jobs=n_jobs, verbose=verbose, pre_dispatch=pre_dispatch)
    predictions = parallel(
        delayed(_fit_and_predict)(clone(estimator), X, Z, train, test, method) for train, test in splits
    )
    first = np.asarray(predictions[0])
    out = np.empty((n_samples, *first.shape[1:]), dtype=first.dtype)
    for (_, test), prediction in zip(splits, predictions):
        out[test] = prediction
    return out


def _fit_and_predict(estimator, X, Z, train, test, method):
    """Fit ``estimator`` on the samples ``train``; its ``method`` on the samples ``test``."""
    estimator.fit(_safe_indexing(X, train), _safe_indexing(Z, train))
    X_test = _safe_indexing(X, test)
    if not _CV_METHODS[method]:
        return getattr(estimator, method)(X_test)
    final = _final_estimator(estimator)
    return getattr(final, method)(_transform_for_final(estimator, X_test), _safe_indexing(Z, test))
