"""Simulated annotators whose skill depends on features the simulation also returns."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state

#: How skill depends on the features in :func:`simulate_feature_annotators`.
SKILLS = ("specialty", "bias")


def simulate_feature_annotators(
    y,
    *,
    n_annotators=100,
    skill="specialty",
    n_classes=None,
    n_groups=2,
    labels_per_sample=3,
    feature_noise=0.0,
    n_noise_features=0,
    missing_label=-1,
    random_state=None,
):
    """Simulate annotators described by features that determine their confusion matrices.

    Every annotator has a class-dependent confusion matrix that is a fixed
    function of a few hidden traits; the returned ``annotator_features``
    show those traits (the numeric ones with optional noise), so a model
    that reads them can predict an annotator it has few or no labels of.
    Two ways skill can depend on the traits (``skill``):

    - ``"specialty"``: the classes are cut into ``n_groups`` contiguous
      groups; each annotator is a specialist of one group (the categorical
      feature ``specialty``, ``"g0"``, ``"g1"``, ...) with an expertise
      level ``e`` in [0, 1] (the numeric feature ``expertise``). On the
      classes of its group it is right with probability ``0.6 + 0.35 e``,
      on the others with ``1/C + (0.5 - 1/C) e``; its errors are spread
      uniformly over the wrong classes.
    - ``"bias"``: each annotator has a test score ``s`` in [0, 1] (the
      feature ``test_score``) and a favourite class (the categorical feature
      ``favourite``, ``"c0"``, ``"c1"``, ...). It is right with probability
      ``0.2 + 0.7 s``; when wrong it answers its favourite class with
      probability 0.8 (when that is wrong) and another wrong class
      otherwise, so its confusion matrix has a heavy column.

    Each sample is labelled by ``labels_per_sample`` distinct annotators
    drawn uniformly, so an annotator gives about ``n_samples *
    labels_per_sample / n_annotators`` labels.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        True class indices in ``[0, n_classes)``.
    n_annotators : int, default=100
        Number of annotators M (columns of ``Z``).
    skill : {"specialty", "bias"}, default="specialty"
        How the traits set the confusion matrices (see above).
    n_classes : int, default=None
        Number of classes C; ``max(y) + 1`` by default (at least 2).
    n_groups : int, default=2
        Groups of classes for ``"specialty"`` (at most C).
    labels_per_sample : int, default=3
        Annotators per sample, at most ``n_annotators``.
    feature_noise : float >= 0, default=0.0
        Standard deviation of Gaussian noise added to the numeric trait
        (``expertise`` or ``test_score``) in the returned features: how
        well the features describe the annotators.
    n_noise_features : int, default=0
        Extra standard-normal feature columns ``noise0``, ``noise1``, ...
        that say nothing about the annotators.
    missing_label : int, default=-1
        Value of missing entries of ``Z``; outside ``[0, n_classes)``.
    random_state : int, RandomState instance or None, default=None
        Seeds every draw.

    Returns
    -------
    data : Bunch
        - ``annotations``: ndarray of shape (n_samples, n_annotators), class
          indices, ``missing_label`` where missing;
        - ``annotator_features``: DataFrame of shape (n_annotators, 2 +
          n_noise_features) indexed ``0 .. n_annotators - 1`` (the default
          annotator names of an array ``Z``), with a categorical and a
          numeric trait column and the noise columns;
        - ``confusion``: ndarray of shape (n_annotators, n_classes,
          n_classes), the true matrices, ``confusion[m, y, z] = P(z | y)``;
        - ``accuracy``: ndarray of shape (n_annotators,), each annotator's
          expected accuracy under the class frequencies of ``y``.

    See Also
    --------
    simulate_annotators : Annotators of several kinds, without features.

    Examples
    --------
    >>> import numpy as np
    >>> from skannot.datasets import simulate_feature_annotators
    >>> y = np.arange(300) % 4
    >>> crowd = simulate_feature_annotators(y, n_annotators=20, random_state=0)
    >>> crowd.annotations.shape, crowd.confusion.shape
    ((300, 20), (20, 4, 4))
    >>> list(crowd.annotator_features.columns)
    ['specialty', 'expertise']
    """
    rng = check_random_state(random_state)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError("y must be a non-empty 1-D array of integer class indices.")
    n_classes = max(int(y.max()) + 1, 2) if n_classes is None else n_classes
    if not isinstance(n_classes, Integral) or n_classes < 2 or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(
            f"n_classes={n_classes!r} must be an int >= 2 and y must hold indices in [0, n_classes)."
        )
    if not isinstance(n_annotators, Integral) or n_annotators < 1:
        raise ValueError(f"n_annotators={n_annotators!r} must be a positive int.")
    if skill not in SKILLS:
        raise ValueError(f"skill={skill!r} is not one of {list(SKILLS)}.")
    if not isinstance(n_groups, Integral) or not 1 <= n_groups <= n_classes:
        raise ValueError(f"n_groups={n_groups!r} must be an int in [1, n_classes={n_classes}].")
    if not isinstance(labels_per_sample, Integral) or not 1 <= labels_per_sample <= n_annotators:
        raise ValueError(
            f"labels_per_sample={labels_per_sample!r} must be an int in [1, n_annotators={n_annotators}]."
        )
    if not isinstance(feature_noise, Real) or not feature_noise >= 0:
        raise ValueError(f"feature_noise={feature_noise!r} must be a number >= 0.")
    if not isinstance(n_noise_features, Integral) or n_noise_features < 0:
        raise ValueError(f"n_noise_features={n_noise_features!r} must be an int >= 0.")
    if not isinstance(missing_label, Integral) or 0 <= missing_label < n_classes:
        raise ValueError(f"missing_label={missing_label!r} must be an int outside [0, n_classes), e.g. -1.")

    C, M = n_classes, n_annotators
    level = rng.uniform(0, 1, M)
    if skill == "specialty":
        group_of_class = np.repeat(
            np.arange(n_groups), [len(g) for g in np.array_split(np.arange(C), n_groups)]
        )
        trait = rng.randint(n_groups, size=M)
        inside = group_of_class[None, :] == trait[:, None]  # (M, C)
        diagonal = np.where(inside, 0.6 + 0.35 * level[:, None], 1 / C + (0.5 - 1 / C) * level[:, None])
        confusion = np.repeat(((1 - diagonal) / (C - 1))[:, :, None], C, axis=2)
        confusion[:, np.arange(C), np.arange(C)] = diagonal
        categorical = pd.Categorical([f"g{g}" for g in trait], categories=[f"g{g}" for g in range(n_groups)])
        names = ("specialty", "expertise")
    else:
        trait = rng.randint(C, size=M)
        accuracy = 0.2 + 0.7 * level
        confusion = np.empty((M, C, C))
        for_favourite = 0.8 if C > 2 else 1.0
        rest = (1 - for_favourite) / max(C - 2, 1)
        for true_class in range(C):
            wrong = (1 - accuracy)[:, None] * np.full((M, C), rest)
            favourite_wrong = trait != true_class
            wrong[favourite_wrong, trait[favourite_wrong]] = (1 - accuracy[favourite_wrong]) * for_favourite
            # An annotator whose favourite is the true class spreads its errors uniformly.
            wrong[~favourite_wrong] = ((1 - accuracy[~favourite_wrong]) / (C - 1))[:, None]
            wrong[:, true_class] = accuracy
            confusion[:, true_class] = wrong
        categorical = pd.Categorical([f"c{c}" for c in trait], categories=[f"c{c}" for c in range(C)])
        names = ("favourite", "test_score")

    order = np.argsort(rng.random_sample((len(y), M)), axis=1)[:, :labels_per_sample]
    rows = np.repeat(np.arange(len(y)), labels_per_sample)
    cols = order.ravel()
    cumulative = confusion[cols, y[rows]].cumsum(axis=1)
    labels = np.minimum((rng.random_sample(len(rows))[:, None] > cumulative).sum(axis=1), C - 1)
    Z = np.full((len(y), M), missing_label, dtype=np.int64)
    Z[rows, cols] = labels

    features = pd.DataFrame({names[0]: categorical, names[1]: level + feature_noise * rng.standard_normal(M)})
    for j in range(n_noise_features):
        features[f"noise{j}"] = rng.standard_normal(M)
    prior = np.bincount(y, minlength=C) / len(y)
    accuracy = (np.diagonal(confusion, axis1=1, axis2=2) * prior).sum(1)
    return Bunch(annotations=Z, annotator_features=features, confusion=confusion, accuracy=accuracy)
