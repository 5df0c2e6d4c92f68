"""Test helpers: the estimators of the family and small settings that fit them in a blink.

Private; the test suite (and anyone testing code built on skannot) uses it, as
scikit-learn's own tests use ``sklearn.utils._testing``.
"""

from __future__ import annotations

import numpy as np

from . import classifiers
from .datasets import simulate_annotators

#: Every estimator class of the family, in ``skannot.classifiers.__all__`` order.
ESTIMATORS = [getattr(classifiers, name) for name in classifiers.__all__]

#: Settings that make any estimator of the family small: one hidden layer of 16 units, two epochs.
_SMALL = {"max_epochs": 2, "hidden_sizes": (16,)}
#: The method's own size settings, where it has any.
_METHOD_SMALL = {
    "AnnotMixClassifier": {"annotator_embed_dim": 4, "annotator_hidden_size": 4},
    "CoNALClassifier": {"embed_dim": 4},
    "CrowdARClassifier": {"reliability_hidden_size": 4},
    "MaDLClassifier": {"embed_dim": 4, "hidden_size": 4},
}


def small_settings(estimator, **overrides):
    """Keyword arguments that build a small, fast ``estimator``.

    Parameters
    ----------
    estimator : class or str
        An estimator class of the family (or its name).
    **overrides
        Settings that replace or add to the small ones.

    Returns
    -------
    settings : dict

    Examples
    --------
    >>> from skannot import AnnotMixClassifier
    >>> from skannot._testing import small_settings
    >>> small_settings(AnnotMixClassifier, max_epochs=3)["max_epochs"]
    3
    """
    name = estimator if isinstance(estimator, str) else estimator.__name__
    return {**_SMALL, **_METHOD_SMALL.get(name, {}), **overrides}


def small(estimator, **overrides):
    """A small, fast instance of ``estimator`` (see :func:`small_settings`).

    Parameters
    ----------
    estimator : class
        An estimator class of the family.
    **overrides
        Settings that replace or add to the small ones.

    Returns
    -------
    instance : estimator
    """
    return estimator(**small_settings(estimator, **overrides))


def small_crowd():
    """150 items of 3 separable classes, 4 annotators of accuracy 0.6-0.9, 2 labels per item.

    A function, not a fixture: each test module builds (and may change) its own copy.

    Returns
    -------
    X : ndarray of shape (150, 3)
    y : ndarray of shape (150,)
    Z : ndarray of shape (150, 4), -1 for missing labels

    Examples
    --------
    >>> from skannot._testing import small_crowd
    >>> X, y, Z = small_crowd()
    >>> X.shape, Z.shape, int((Z >= 0).sum(1).max())
    ((150, 3), (150, 4), 2)
    """
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    X = (np.eye(3)[y] * 3 + rng.normal(size=(150, 3))).astype(np.float32)
    Z, _ = simulate_annotators(X, y, n_annotators=4, accuracy=(0.6, 0.9), labels_per_sample=2, random_state=0)
    return X, y, Z
