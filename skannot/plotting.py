"""Pictures of what a model learned about its annotators (needs matplotlib: ``pip install skannot[plot]``)."""

from __future__ import annotations

import math

import numpy as np

from ._annotators import annotator_indices


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "skannot.plotting needs matplotlib; install it with `pip install skannot[plot]`."
        ) from exc
    return plt


def _fitted(estimator):
    """The annotator model inside ``estimator``: itself, or the last step of a pipeline."""
    if hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return estimator


def _matrices(source, name):
    """Array of ``source``, or its fitted ``name`` attribute; the estimator (or None) too."""
    estimator = _fitted(source)
    if hasattr(estimator, name):
        return np.asarray(getattr(estimator, name), dtype=float), estimator
    if hasattr(estimator, "fit"):
        raise ValueError(f"{type(estimator).__name__} has no {name}; fit it first.")
    return np.asarray(source, dtype=float), None


def plot_annotator_confusion(
    estimator_or_matrices,
    annotators=None,
    *,
    true=None,
    classes=None,
    annotator_names=None,
    ncols=5,
    annotate=None,
    cmap="Blues",
    panel_size=2.4,
):
    """Heatmaps of annotator confusion matrices, one panel per annotator.

    Parameters
    ----------
    estimator_or_matrices : estimator or array-like of shape (n_annotators, n_classes, n_classes)
        A fitted :class:`~skannot.AnnotMixClassifier` (its
        ``annotator_confusion_``), a pipeline ending in one, or the matrices
        themselves; entry ``[m, y, z]`` is
        ``P(z | y)`` for annotator ``m``.
    annotators : array-like of shape (n_shown,), default=None
        The annotators to draw, in this order, by name (values of
        ``annotator_names``, or of the estimator's ``annotator_names_``) or
        by index; all by default.
    true : array-like of shape (n_annotators, n_classes, n_classes), default=None
        True confusion matrices, e.g. from
        :func:`~skannot.datasets.simulate_annotators`. When given, each
        estimated panel gets the true one beneath it.
    classes : array-like of shape (n_classes,), default=None
        Tick labels; the estimator's ``classes_`` or ``0 .. n_classes - 1``.
    annotator_names : array-like of shape (n_annotators,), default=None
        Panel titles; the estimator's ``annotator_names_`` or the indices.
    ncols : int, default=5
        Panels per row.
    annotate : bool, default=None
        Write the probabilities into the cells; by default only for up to
        six classes.
    cmap : str or Colormap, default="Blues"
        Colour map of the probabilities, which run from 0 to 1.
    panel_size : float, default=2.4
        Width and height of one panel in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure
        ``n_shown`` axes (``2 * n_shown`` with ``true``) plus one colour bar.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skannot.datasets import make_crowd_classification
    >>> from skannot.plotting import plot_annotator_confusion
    >>> crowd = make_crowd_classification(n_samples=50, n_annotators=3, random_state=0)
    >>> fig = plot_annotator_confusion(crowd.confusion)
    >>> len(fig.axes)  # three heatmaps and the colour bar
    4
    """
    plt = _pyplot()
    confusion, estimator = _matrices(estimator_or_matrices, "annotator_confusion_")
    if confusion.ndim != 3 or confusion.shape[1] != confusion.shape[2]:
        raise ValueError(
            "Expected confusion matrices of shape (n_annotators, n_classes, n_classes); "
            f"got {confusion.shape}."
        )
    n_annotators, n_classes, _ = confusion.shape
    if true is not None:
        true = np.asarray(true, dtype=float)
        if true.shape != confusion.shape:
            raise ValueError(f"true has shape {true.shape} but the estimated matrices {confusion.shape}.")
    if classes is None:
        classes = getattr(estimator, "classes_", np.arange(n_classes))
    if annotator_names is None:
        annotator_names = getattr(estimator, "annotator_names_", np.arange(n_annotators))
    annotators = _selected(annotators, annotator_names, n_annotators)
    if annotate is None:
        annotate = n_classes <= 6

    ncols = min(ncols, len(annotators))
    blocks = math.ceil(len(annotators) / ncols)
    per_block = 1 if true is None else 2
    fig, grid = plt.subplots(
        blocks * per_block,
        ncols,
        figsize=(panel_size * ncols + 1, panel_size * blocks * per_block),
        squeeze=False,
        layout="constrained",
    )
    used = np.zeros(grid.shape, dtype=bool)
    for j, m in enumerate(annotators):
        row, col = (j // ncols) * per_block, j % ncols
        panels = [(confusion[m], f"{annotator_names[m]}")]
        if true is not None:
            panels = [
                (confusion[m], f"{annotator_names[m]}: estimated"),
                (true[m], f"{annotator_names[m]}: true"),
            ]
        for k, (matrix, title) in enumerate(panels):
            ax = grid[row + k, col]
            used[row + k, col] = True
            image = ax.imshow(matrix, vmin=0, vmax=1, cmap=cmap)
            ax.set_title(title, fontsize="medium")
            ax.set_xticks(range(n_classes), labels=classes, rotation=90, fontsize="small")
            ax.set_yticks(range(n_classes), labels=classes, fontsize="small")
            if col == 0:
                ax.set_ylabel("true class")
            ax.set_xlabel("annotator's label")
            if annotate:
                for (y, z), p in np.ndenumerate(matrix):
                    ax.text(
                        z, y, f"{p:.2f}", ha="center", va="center", fontsize="x-small",
                        color="white" if p > 0.6 else "black",
                    )  # fmt: skip
    for ax in grid[~used]:
        fig.delaxes(ax)
    fig.colorbar(image, ax=grid[used].tolist(), label="probability", shrink=0.8)
    return fig


def _selected(annotators, annotator_names, n_annotators):
    """Indices of the annotators to draw: all, or those named or indexed by ``annotators``."""
    if annotators is None:
        return np.arange(n_annotators)
    if len(annotator_names) != n_annotators:
        raise ValueError(f"annotator_names has {len(annotator_names)} entries for {n_annotators} annotators.")
    selected = annotator_indices(annotators, annotator_names)
    if len(selected) == 0:
        raise ValueError("annotators must be a non-empty 1-D list of annotator names or indices.")
    return selected


def plot_annotator_accuracy(estimated, true=None, *, annotators=None, annotator_names=None, ax=None):
    """Estimated annotator accuracies, against the true ones when known.

    Parameters
    ----------
    estimated : estimator or array-like of shape (n_annotators,)
        A fitted :class:`~skannot.AnnotMixClassifier` (its
        ``annotator_accuracy_``), a pipeline ending in one, or the accuracies.
    true : array-like of shape (n_annotators,), default=None
        True accuracies. Without them the plot is a bar chart per annotator;
        with them a scatter plot of estimated against true accuracy with the
        diagonal and Pearson's correlation in the title.
    annotators : array-like of shape (n_shown,), default=None
        The annotators to draw, in this order, by name or by index; all by
        default.
    annotator_names : array-like of shape (n_annotators,), default=None
        Annotator labels; the estimator's ``annotator_names_`` or the indices.
    ax : matplotlib.axes.Axes, default=None
        Where to draw; a new figure by default.

    Returns
    -------
    ax : matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skannot.plotting import plot_annotator_accuracy
    >>> ax = plot_annotator_accuracy([0.9, 0.5, 0.7], true=[0.85, 0.55, 0.6])
    >>> ax.get_xlabel()
    'true accuracy'
    """
    plt = _pyplot()
    accuracy, estimator = _matrices(estimated, "annotator_accuracy_")
    if accuracy.ndim != 1:
        raise ValueError(f"Expected accuracies of shape (n_annotators,); got {accuracy.shape}.")
    if annotator_names is None:
        annotator_names = getattr(estimator, "annotator_names_", np.arange(len(accuracy)))
    if true is not None:
        true = np.asarray(true, dtype=float)
        if true.shape != accuracy.shape:
            raise ValueError(f"true has shape {true.shape} but the estimated accuracies {accuracy.shape}.")
    shown = _selected(annotators, annotator_names, len(accuracy))
    accuracy, annotator_names = accuracy[shown], np.asarray(annotator_names, dtype=object)[shown]
    if true is not None:
        true = true[shown]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(accuracy) + 2), 4) if true is None else (4.5, 4.5))
    if true is None:
        ax.bar(np.arange(len(accuracy)), accuracy, color="tab:blue")
        ax.set_xticks(np.arange(len(accuracy)), labels=annotator_names, rotation=90, fontsize="small")
        ax.set_xlabel("annotator")
        ax.set_ylabel("estimated accuracy")
        ax.set_ylim(0, 1)
        return ax
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.scatter(true, accuracy, color="tab:blue", zorder=2)
    for name, x, y in zip(annotator_names, true, accuracy):
        ax.annotate(str(name), (x, y), textcoords="offset points", xytext=(3, 3), fontsize="x-small")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="true accuracy", ylabel="estimated accuracy", aspect="equal")
    if len(true) > 1 and true.std() > 0 and accuracy.std() > 0:
        ax.set_title(f"Pearson r = {np.corrcoef(true, accuracy)[0, 1]:.2f}")
    return ax
