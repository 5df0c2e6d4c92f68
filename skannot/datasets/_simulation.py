"""Simulated annotators with known confusion matrices."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state


def simulate_annotators(
    X,
    y,
    *,
    n_annotators=10,
    accuracy=(0.4, 0.95),
    labels_per_sample=3,
    n_classes=None,
    missing_label=-1,
    random_state=None,
):
    """Simulate annotators with class-dependent confusion matrices.

    Annotator ``m`` gets a mean accuracy ``a_m``; the diagonal of its confusion
    matrix varies around ``a_m`` per class and the remaining mass of each row
    is spread over the wrong classes by a Dirichlet draw, so mistakes are
    class-dependent. Each sample is labelled by ``labels_per_sample`` distinct
    annotators chosen uniformly.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Instances; only their number is used by this class-dependent model.
    y : array-like of shape (n_samples,)
        True class indices in ``[0, n_classes)``.
    n_annotators : int, default=10
    accuracy : float or (low, high), default=(0.4, 0.95)
        Mean accuracy of every annotator, or the range they are drawn from
        uniformly.
    labels_per_sample : int, default=3
        Annotators per sample (at most ``n_annotators``).
    n_classes : int, default=None
        Number of classes; ``max(y) + 1`` by default.
    missing_label : int, default=-1
        Value of missing entries.
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    Z : ndarray of shape (n_samples, n_annotators)
        Simulated labels, ``missing_label`` where an annotator did not label.
    confusion : ndarray of shape (n_annotators, n_classes, n_classes)
        True confusion matrices; ``confusion[m, y, z] = P(z | y)`` for annotator ``m``.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot.datasets import simulate_annotators
    >>> y = np.array([0, 1, 2, 1])
    >>> Z, confusion = simulate_annotators(np.zeros((4, 1)), y, n_annotators=5, random_state=0)
    >>> Z.shape, confusion.shape, int((Z >= 0).sum())
    ((4, 5), (5, 3, 3), 12)
    """
    rng = check_random_state(random_state)
    y = np.asarray(y)
    n_samples = len(y)
    if len(X) != n_samples:
        raise ValueError(f"X has {len(X)} samples but y has {n_samples}.")
    if not isinstance(labels_per_sample, Integral) or not 1 <= labels_per_sample <= n_annotators:
        raise ValueError(f"labels_per_sample must be an int in [1, n_annotators={n_annotators}].")
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    low, high = (accuracy, accuracy) if np.isscalar(accuracy) else accuracy
    if not 0 <= low <= high <= 1:
        raise ValueError(f"accuracy={accuracy!r} must be a probability or a range (low, high) in [0, 1].")

    mean_accuracy = rng.uniform(low, high, size=n_annotators)
    diagonal = np.clip(mean_accuracy[:, None] + rng.uniform(-0.1, 0.1, (n_annotators, n_classes)), 0, 1)
    off = rng.dirichlet(np.ones(n_classes - 1), size=(n_annotators, n_classes))
    confusion = np.empty((n_annotators, n_classes, n_classes))
    wrong = ~np.eye(n_classes, dtype=bool)
    confusion[:, ~wrong] = diagonal.reshape(n_annotators, n_classes)
    confusion[:, wrong] = ((1 - diagonal)[:, :, None] * off).reshape(n_annotators, -1)

    chosen = np.argsort(rng.random((n_samples, n_annotators)), axis=1)[:, :labels_per_sample]
    rows = np.repeat(np.arange(n_samples), labels_per_sample)
    cols = chosen.ravel()
    cumulative = confusion[cols, y[rows]].cumsum(axis=1)
    labels = (rng.random(len(rows))[:, None] > cumulative).sum(axis=1)
    Z = np.full((n_samples, n_annotators), missing_label, dtype=np.int64)
    Z[rows, cols] = np.minimum(labels, n_classes - 1)
    return Z, confusion
