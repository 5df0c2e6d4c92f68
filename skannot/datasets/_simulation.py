"""Simulated annotators with known confusion matrices."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.datasets import make_classification
from sklearn.utils import Bunch, check_random_state

#: Annotator kinds understood by :func:`simulate_annotators`.
KINDS = ("class", "instance", "adversarial", "random")


def simulate_annotators(
    X,
    y,
    *,
    n_annotators=10,
    accuracy=(0.4, 0.95),
    labels_per_sample=3,
    n_classes=None,
    kinds="class",
    n_regions=4,
    missing_label=-1,
    random_state=None,
):
    """Simulate crowd annotators of several kinds with known confusion matrices.

    Every annotator ``m`` first gets a mean accuracy ``a_m`` drawn from
    ``accuracy`` and a class-dependent confusion matrix: its diagonal varies
    around ``a_m`` per class and the rest of each row is spread over the wrong
    classes by a Dirichlet draw. What the annotator does with it depends on
    its kind:

    - ``"class"``: labels with that class-dependent confusion matrix,
      whatever the instance.
    - ``"instance"``: instance-dependent expertise. The feature space is cut
      into ``n_regions`` regions (the Voronoi cells of randomly drawn samples
      after standardising ``X``); the annotator is an expert in half of them
      (rounded up), where it labels with its class-dependent matrix, and
      guesses uniformly at random elsewhere.
    - ``"adversarial"``: never gives the true label. With probability ``a_m``
      it answers ``pi(y)`` for a fixed random cyclic permutation ``pi`` of the
      classes, otherwise another wrong class uniformly. Its labels carry
      information that a confusion matrix can exploit, but majority vote is
      misled by them.
    - ``"random"``: uniformly random labels (a spammer).

    Each sample is labelled by ``labels_per_sample`` distinct annotators
    drawn uniformly.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Instances; their features are only read for ``"instance"`` annotators,
        which need them finite.
    y : array-like of shape (n_samples,)
        True class indices in ``[0, n_classes)``.
    n_annotators : int, default=10
        Number of annotators (columns of ``Z``).
    accuracy : float or (low, high), default=(0.4, 0.95)
        Mean accuracy ``a_m`` of every annotator, or the range it is drawn
        from uniformly (for ``"instance"`` annotators the accuracy in their
        regions of expertise).
    labels_per_sample : int or (low, high), default=3
        Annotators per sample, or the range (both ends included) from which
        each sample's number of annotators is drawn uniformly; at most
        ``n_annotators``.
    n_classes : int, default=None
        Number of classes; ``max(y) + 1`` by default.
    kinds : str or sequence of str of length n_annotators, default="class"
        Kind of every annotator, or of each one: ``"class"``, ``"instance"``,
        ``"adversarial"`` or ``"random"``.
    n_regions : int, default=4
        Number of feature-space regions for ``"instance"`` annotators.
    missing_label : int, default=-1
        Value of missing entries; not a class, so outside ``[0, n_classes)``.
    random_state : int, RandomState instance or None, default=None
        Seeds every draw: an int gives the same annotators and labels.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_annotators)
        Simulated labels, ``missing_label`` where an annotator did not label.
    confusion : ndarray of shape (n_annotators, n_classes, n_classes)
        True confusion matrices; ``confusion[m, y, z] = P(z | y)`` for
        annotator ``m``. For an ``"instance"`` annotator, whose confusion
        depends on ``x``, it is ``P(z | x, y)`` averaged over the samples of
        ``X`` of class ``y`` (over all samples for a class absent from ``y``):
        what a model that sees the instances should recover when it too
        averages its per-instance estimates, as
        :attr:`~skannot.AnnotMixClassifier.annotator_confusion_` does.

    See Also
    --------
    make_crowd_classification : Instances and simulated annotations in one call.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot.datasets import simulate_annotators
    >>> y = np.array([0, 1, 2, 1])
    >>> Z, confusion = simulate_annotators(np.zeros((4, 1)), y, n_annotators=5, random_state=0)
    >>> Z.shape, confusion.shape, int((Z >= 0).sum())
    ((4, 5), (5, 3, 3), 12)
    >>> Z, confusion = simulate_annotators(
    ...     np.zeros((4, 1)), y, n_annotators=2, labels_per_sample=2, kinds=["class", "random"]
    ... )
    >>> confusion[1]
    array([[0.33333333, 0.33333333, 0.33333333],
           [0.33333333, 0.33333333, 0.33333333],
           [0.33333333, 0.33333333, 0.33333333]])
    """
    simulation = _simulate(
        X,
        y,
        n_annotators=n_annotators,
        accuracy=accuracy,
        labels_per_sample=labels_per_sample,
        n_classes=n_classes,
        kinds=kinds,
        n_regions=n_regions,
        missing_label=missing_label,
        random_state=random_state,
    )
    return simulation.annotations, simulation.confusion


def make_crowd_classification(
    n_samples=1000,
    n_features=20,
    *,
    n_informative=None,
    n_classes=3,
    class_sep=1.0,
    n_annotators=10,
    kinds="class",
    accuracy=(0.4, 0.95),
    labels_per_sample=3,
    n_regions=4,
    return_X_y=False,
    random_state=None,
):
    """Generate a classification problem labelled by simulated crowd annotators.

    The instances come from :func:`sklearn.datasets.make_classification`
    (one Gaussian cluster per class, no redundant features, no flipped
    targets: ``target`` is the truth the annotators see); the annotators
    are simulated by :func:`simulate_annotators`, whose documentation
    describes the annotator kinds.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of instances.
    n_features : int, default=20
        Number of features.
    n_informative : int, default=None
        Informative features; ``max(2, n_features // 2)`` (at most
        ``n_features``) by default. The others are noise.
    n_classes : int, default=3
        Number of classes.
    class_sep : float, default=1.0
        Distance between the class clusters; larger is easier.
    n_annotators : int, default=10
        Number of annotators.
    kinds : str or sequence of str of length n_annotators, default="class"
        Annotator kinds: ``"class"``, ``"instance"``, ``"adversarial"`` or
        ``"random"``.
    accuracy : float or (low, high), default=(0.4, 0.95)
        Mean annotator accuracy or the range it is drawn from.
    labels_per_sample : int or (low, high), default=3
        Annotators per sample, or the range each sample's count is drawn from.
    n_regions : int, default=4
        Feature-space regions of ``"instance"`` annotators.
    return_X_y : bool, default=False
        Return ``(X, Z)`` only.
    random_state : int, RandomState instance or None, default=None
        Seeds the instances and the annotators.

    Returns
    -------
    data : Bunch
        - ``data``: ndarray of shape (n_samples, n_features), the instances;
        - ``annotations``: ndarray of shape (n_samples, n_annotators), class
          indices, -1 where missing;
        - ``target``: ndarray of shape (n_samples,), the true classes;
        - ``confusion``: ndarray of shape (n_annotators, n_classes, n_classes),
          true confusion matrices (averaged over the instances of each class
          for ``"instance"`` annotators);
        - ``correct_proba``: ndarray of shape (n_samples, n_annotators),
          probability that annotator ``m`` labels sample ``i`` correctly,
          ``P(z = y_i | x_i, m)``, whether or not it did label it;
        - ``annotator_kinds``: ndarray of shape (n_annotators,);
        - ``regions``: ndarray of shape (n_samples,), feature-space region of
          each instance (all 0 without ``"instance"`` annotators).
    (X, Z) : tuple of ndarrays
        If ``return_X_y`` is True.

    Examples
    --------
    >>> from skannot.datasets import make_crowd_classification
    >>> crowd = make_crowd_classification(
    ...     n_samples=200, n_features=5, n_annotators=4,
    ...     kinds=["class", "instance", "adversarial", "random"], random_state=0,
    ... )
    >>> crowd.data.shape, crowd.annotations.shape, crowd.confusion.shape
    ((200, 5), (200, 4), (4, 3, 3))
    >>> float(crowd.confusion[2].trace())  # the adversary is never right
    0.0
    """
    rng = check_random_state(random_state)
    if n_informative is None:
        n_informative = min(n_features, max(2, n_features // 2))
    X, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        class_sep=class_sep,
        flip_y=0.0,
        random_state=rng,
    )
    simulation = _simulate(
        X,
        y,
        n_annotators=n_annotators,
        accuracy=accuracy,
        labels_per_sample=labels_per_sample,
        n_classes=n_classes,
        kinds=kinds,
        n_regions=n_regions,
        missing_label=-1,
        random_state=rng,
    )
    if return_X_y:
        return X, simulation.annotations
    return Bunch(data=X, target=y, **simulation)


def _check_range(value, name, low_bound, high_bound, integral):
    """``value`` or ``(low, high)`` as a pair within the bounds, or a ValueError saying what is allowed."""
    pair = (value, value) if np.isscalar(value) else tuple(value)
    kind = Integral if integral else (int, float, np.floating, np.integer)
    if (
        len(pair) != 2
        or not all(isinstance(v, kind) and not isinstance(v, bool) for v in pair)
        or not low_bound <= pair[0] <= pair[1] <= high_bound
    ):
        what = "an int" if integral else "a number"
        raise ValueError(
            f"{name}={value!r} must be {what} or a range (low, high) with "
            f"{low_bound} <= low <= high <= {high_bound}."
        )
    return pair


def _check_kinds(kinds, n_annotators):
    kinds = np.array([kinds] * n_annotators if isinstance(kinds, str) else list(kinds), dtype=object)
    if len(kinds) != n_annotators:
        raise ValueError(f"kinds has {len(kinds)} entries but there are n_annotators={n_annotators}.")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"Unknown annotator kind(s) {unknown}; use {list(KINDS)}.")
    return kinds.astype(str)


def _regions(X, n_regions, rng):
    """Voronoi cell of each sample around ``n_regions`` random samples, in standardised feature space."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if not np.all(np.isfinite(X)):
        raise ValueError(
            "X contains NaN or infinite values; 'instance' annotators are experts in regions of the "
            "feature space and need finite features to place the samples. Impute X first (e.g. "
            "with sklearn.impute.SimpleImputer) or drop those samples."
        )
    scale = X.std(axis=0)
    X = (X - X.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    anchors = X[rng.choice(len(X), size=min(n_regions, len(X)), replace=False)]
    distances = (X**2).sum(1)[:, None] - 2 * X @ anchors.T + (anchors**2).sum(1)[None, :]
    return distances.argmin(axis=1)


def _simulate(
    X,
    y,
    *,
    n_annotators,
    accuracy,
    labels_per_sample,
    n_classes,
    kinds,
    n_regions,
    missing_label,
    random_state,
):
    """Everything :func:`make_crowd_classification` returns about the annotators, as a dict-like Bunch."""
    rng = check_random_state(random_state)
    y = np.asarray(y)
    n_samples = len(y)
    if len(X) != n_samples:
        raise ValueError(f"X has {len(X)} samples but y has {n_samples}.")
    if not isinstance(n_annotators, Integral) or n_annotators < 1:
        raise ValueError(f"n_annotators={n_annotators!r} must be a positive int.")
    low_count, high_count = _check_range(labels_per_sample, "labels_per_sample", 1, n_annotators, True)
    n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"y must hold class indices in [0, n_classes={n_classes}).")
    if not isinstance(missing_label, Integral) or isinstance(missing_label, (bool, np.bool_)):
        raise ValueError(f"missing_label={missing_label!r} must be an int outside [0, n_classes), e.g. -1.")
    if 0 <= missing_label < n_classes:
        raise ValueError(
            f"missing_label={missing_label} is also a class (classes are 0, ..., {n_classes - 1}), so Z "
            "could not tell a missing label from that class; choose a value outside "
            f"[0, {n_classes}), e.g. -1."
        )
    low, high = _check_range(accuracy, "accuracy", 0, 1, False)
    kinds = _check_kinds(kinds, n_annotators)
    if not isinstance(n_regions, Integral) or n_regions < 1:
        raise ValueError(f"n_regions={n_regions!r} must be a positive int.")

    # Draws for other kinds come after these, and only when asked for, so that
    # a seed gives the same class-dependent annotators whatever else is added.
    mean_accuracy = rng.uniform(low, high, size=n_annotators)
    diagonal = np.clip(mean_accuracy[:, None] + rng.uniform(-0.1, 0.1, (n_annotators, n_classes)), 0, 1)
    off = rng.dirichlet(np.ones(n_classes - 1), size=(n_annotators, n_classes))
    confusion = np.empty((n_annotators, n_classes, n_classes))
    wrong = ~np.eye(n_classes, dtype=bool)
    confusion[:, ~wrong] = diagonal.reshape(n_annotators, n_classes)
    confusion[:, wrong] = ((1 - diagonal)[:, :, None] * off).reshape(n_annotators, -1)

    order = np.argsort(rng.random((n_samples, n_annotators)), axis=1)
    if low_count == high_count:
        counts = np.full(n_samples, low_count)
    else:
        counts = rng.randint(low_count, high_count + 1, size=n_samples)
    chosen = np.arange(n_annotators)[None, :] < counts[:, None]
    rows = np.nonzero(chosen)[0]
    cols = order[chosen]

    uniform = np.full((n_classes, n_classes), 1 / n_classes)
    for m in np.flatnonzero(kinds == "adversarial"):
        cycle = rng.permutation(n_classes)
        target = np.empty(n_classes, dtype=np.int64)
        target[cycle] = np.roll(cycle, -1)
        adversary = np.zeros((n_classes, n_classes))
        if n_classes > 2:
            adversary[wrong] = (1 - mean_accuracy[m]) / (n_classes - 2)
            adversary[np.arange(n_classes), target] = mean_accuracy[m]
        else:
            adversary[np.arange(n_classes), target] = 1.0
        confusion[m] = adversary
    confusion[kinds == "random"] = uniform

    regions = np.zeros(n_samples, dtype=np.int64)
    expert = np.ones((n_annotators, 1), dtype=bool)
    instance = kinds == "instance"
    if instance.any():
        regions = _regions(X, n_regions, rng)
        n_cells = regions.max() + 1
        expert = np.ones((n_annotators, n_cells), dtype=bool)
        for m in np.flatnonzero(instance):
            expert[m] = False
            expert[m, rng.permutation(n_cells)[: -(-n_cells // 2)]] = True
    sample_expert = expert[:, regions].T  # (n_samples, n_annotators)

    row_proba = np.where(sample_expert[rows, cols][:, None], confusion[cols, y[rows]], 1 / n_classes)
    cumulative = row_proba.cumsum(axis=1)
    labels = (rng.random(len(rows))[:, None] > cumulative).sum(axis=1)
    Z = np.full((n_samples, n_annotators), missing_label, dtype=np.int64)
    Z[rows, cols] = np.minimum(labels, n_classes - 1)

    correct_proba = np.where(sample_expert, confusion[:, y, y].T, 1 / n_classes)
    if instance.any():
        class_share = np.empty((n_annotators, n_classes))
        for c in range(n_classes):
            members = y == c if (y == c).any() else slice(None)
            class_share[:, c] = sample_expert[members].mean(axis=0)
        share = class_share[instance][:, :, None]
        confusion[instance] = share * confusion[instance] + (1 - share) * uniform
    return Bunch(
        annotations=Z,
        confusion=confusion,
        correct_proba=correct_proba,
        annotator_kinds=kinds,
        regions=regions,
    )
