from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skannot import AnnotMixClassifier  # noqa: E402
from skannot.plotting import plot_annotator_accuracy, plot_annotator_confusion  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def confusion():
    rng = np.random.default_rng(0)
    matrices = rng.dirichlet(np.ones(3), size=(7, 3))
    return matrices


def heatmaps(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def test_one_heatmap_per_annotator_and_a_colour_bar(confusion):
    fig = plot_annotator_confusion(confusion, ncols=3)
    assert len(fig.axes) == 7 + 1  # the two empty cells of the 3 x 3 grid are removed
    assert len(heatmaps(fig)) == 7
    np.testing.assert_allclose(heatmaps(fig)[4].images[0].get_array(), confusion[4])
    assert [ax.get_title() for ax in heatmaps(fig)][:2] == ["0", "1"]


def test_selected_annotators_with_the_truth_beneath(confusion):
    true = confusion[::-1]
    fig = plot_annotator_confusion(confusion, annotators=[5, 2], true=true, annotate=False)
    assert len(fig.axes) == 2 * 2 + 1
    titles = [ax.get_title() for ax in heatmaps(fig)]
    assert titles == ["5: estimated", "2: estimated", "5: true", "2: true"]
    np.testing.assert_allclose(heatmaps(fig)[3].images[0].get_array(), true[2])
    assert not heatmaps(fig)[0].texts


def test_cells_are_annotated_for_few_classes(confusion):
    fig = plot_annotator_confusion(confusion, annotators=[0])
    assert len(heatmaps(fig)[0].texts) == 9


def test_reads_a_fitted_estimator_and_a_pipeline(crowd_data):
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(max_epochs=1, hidden_sizes=(8,), random_state=0)
    names = np.where(Z[:100] >= 0, np.array(["ant", "bee", "cat"], dtype=object)[Z[:100]], None)
    pipe = make_pipeline(StandardScaler(), clf).fit(X[:100], names)
    for source in (clf, pipe):
        fig = plot_annotator_confusion(source)
        assert len(heatmaps(fig)) == 6
        assert [t.get_text() for t in heatmaps(fig)[0].get_xticklabels()] == ["ant", "bee", "cat"]
        ax = plot_annotator_accuracy(source)
        np.testing.assert_allclose([p.get_height() for p in ax.patches], clf.annotator_accuracy_)
    with pytest.raises(ValueError, match="fit it first"):
        plot_annotator_confusion(AnnotMixClassifier())


def test_accuracy_against_the_truth():
    named = SimpleNamespace(annotator_accuracy_=np.array([0.9, 0.5, 0.7]), annotator_names_=["a", "b", "c"])
    ax = plot_annotator_accuracy(named, true=[0.8, 0.4, 0.75])
    assert len(ax.figure.axes) == 1
    np.testing.assert_allclose(ax.collections[0].get_offsets(), [[0.8, 0.9], [0.4, 0.5], [0.75, 0.7]])
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c"]
    assert ax.get_title().startswith("Pearson r = ")
    _, given = plt.subplots()
    assert plot_annotator_accuracy([0.3, 0.6], ax=given) is given


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda c: plot_annotator_confusion(c[0]), "n_annotators, n_classes, n_classes"),
        (lambda c: plot_annotator_confusion(c, true=c[:2]), "true has shape"),
        (lambda c: plot_annotator_confusion(c, annotators=[7]), r"annotators must lie in \[0, 7\)"),
        (lambda c: plot_annotator_confusion(c, annotators=[]), "non-empty"),
        (lambda c: plot_annotator_accuracy(c), r"shape \(n_annotators,\)"),
        (lambda c: plot_annotator_accuracy([0.5, 0.5], true=[0.5]), "true has shape"),
    ],
)
def test_invalid_input_is_explained(confusion, call, match):
    with pytest.raises(ValueError, match=match):
        call(confusion)
