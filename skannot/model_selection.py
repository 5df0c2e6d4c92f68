"""Cross-validation on annotation matrices, where only noisy labels exist.

With an int ``cv`` and a 2-D ``Z``, scikit-learn's ``GridSearchCV`` and
``cross_val_score`` fall back to plain, unshuffled ``KFold`` (``check_cv``
stratifies only binary and multiclass 1-D targets), and ``StratifiedKFold``
refuses a 2-D ``Z``. :class:`AnnotationStratifiedKFold` stratifies by the
majority-vote label instead and guarantees that every fold holds labels.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_consistent_length

from ._validation import check_annotations


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
