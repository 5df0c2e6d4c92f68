import numpy as np
import pytest

from skannot.datasets import make_crowd_classification, simulate_annotators

KINDS = ["class", "instance", "adversarial", "random"]


def empirical_confusion(Z, y, n_classes):
    """Observed P(z | y) of every annotator."""
    counts = np.zeros((Z.shape[1], n_classes, n_classes))
    rows, cols = np.nonzero(Z >= 0)
    np.add.at(counts, (cols, y[rows], Z[rows, cols]), 1)
    return counts / counts.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def everyone_labels_everything():
    """Many samples, every annotator labels every sample: empirical rates approach the true ones."""
    return make_crowd_classification(
        n_samples=8000, n_features=4, n_classes=4, n_annotators=8, kinds=KINDS * 2,
        labels_per_sample=8, accuracy=(0.7, 0.9), random_state=0,
    )  # fmt: skip


def test_default_class_dependent_annotators_are_unchanged():
    # pinned output: the main job, conftest and the benchmarks rely on these draws
    y = np.arange(20) % 4
    Z, confusion = simulate_annotators(np.arange(40.0).reshape(20, 2), y, n_annotators=5, random_state=3)
    np.testing.assert_array_equal(
        Z[:4], [[0, 0, 2, -1, -1], [1, 1, -1, -1, 1], [-1, -1, 3, 2, 2], [3, 0, 2, -1, -1]]
    )
    np.testing.assert_allclose(confusion[0, 0], [0.7822, 0.1548, 0.0374, 0.0256], atol=1e-4)


def test_shapes_counts_and_seeding():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(50, 2)), rng.integers(0, 3, 50)
    Z, confusion = simulate_annotators(X, y, n_annotators=7, labels_per_sample=2, random_state=0)
    assert Z.shape == (50, 7) and confusion.shape == (7, 3, 3)
    assert ((Z >= 0).sum(1) == 2).all()
    np.testing.assert_allclose(confusion.sum(-1), 1)
    again, _ = simulate_annotators(X, y, n_annotators=7, labels_per_sample=2, random_state=0)
    np.testing.assert_array_equal(Z, again)
    other, _ = simulate_annotators(X, y, n_annotators=7, labels_per_sample=2, random_state=1)
    assert (Z != other).any()
    Z, _ = simulate_annotators(X, y, n_annotators=3, missing_label=99, random_state=0)
    assert set(np.unique(Z)) <= {0, 1, 2, 99}


def test_labels_per_sample_range():
    y = np.zeros(2000, dtype=int)
    y[::2] = 1
    Z, _ = simulate_annotators(
        np.zeros((2000, 1)), y, n_annotators=9, labels_per_sample=(1, 7), random_state=0
    )
    counts = (Z >= 0).sum(1)
    assert counts.min() == 1 and counts.max() == 7
    assert abs(counts.mean() - 4) < 0.15


@pytest.mark.parametrize("m", range(8))
def test_labels_follow_the_returned_confusion(everyone_labels_everything, m):
    crowd = everyone_labels_everything
    observed = empirical_confusion(crowd.annotations, crowd.target, 4)[m]
    np.testing.assert_allclose(observed, crowd.confusion[m], atol=0.05)
    np.testing.assert_allclose(crowd.confusion[m].sum(-1), 1)


def test_kinds_behave_as_documented(everyone_labels_everything):
    crowd = everyone_labels_everything
    y, Z, confusion = crowd.target, crowd.annotations, crowd.confusion
    np.testing.assert_array_equal(crowd.annotator_kinds, KINDS * 2)
    for m in (2, 6):  # adversaries never tell the truth and prefer a fixed other class
        assert (Z[:, m] != y).all()
        favourite = confusion[m].argmax(1)
        assert (favourite != np.arange(4)).all() and len(set(favourite)) == 4
    np.testing.assert_allclose(confusion[[3, 7]], 0.25)  # spammers
    for m in (1, 5):  # experts in some regions, guessers elsewhere
        in_region = crowd.correct_proba[:, m] > 0.5
        assert 0 < in_region.mean() < 1
        assert (Z[in_region, m] == y[in_region]).mean() > 0.65
        assert abs((Z[~in_region, m] == y[~in_region]).mean() - 0.25) < 0.03
        assert len(np.unique(crowd.regions)) == 4


def test_correct_proba_averages_to_the_confusion_diagonal(everyone_labels_everything):
    crowd = everyone_labels_everything
    for c in range(4):
        members = crowd.target == c
        np.testing.assert_allclose(crowd.correct_proba[members].mean(0), crowd.confusion[:, c, c], atol=1e-12)


def test_binary_adversary_always_flips():
    y = np.arange(100) % 2
    Z, confusion = simulate_annotators(
        np.zeros((100, 1)), y, n_annotators=1, labels_per_sample=1, kinds="adversarial", random_state=0
    )
    np.testing.assert_array_equal(Z[:, 0], 1 - y)
    np.testing.assert_array_equal(confusion[0], [[0, 1], [1, 0]])


def test_make_crowd_classification_returns_and_seeds():
    kw = dict(n_samples=120, n_features=6, n_classes=3, n_annotators=5, random_state=0)
    crowd = make_crowd_classification(**kw)
    assert crowd.data.shape == (120, 6) and crowd.target.shape == (120,)
    assert crowd.annotations.shape == (120, 5) and crowd.correct_proba.shape == (120, 5)
    assert crowd.confusion.shape == (5, 3, 3)
    X, Z = make_crowd_classification(**kw, return_X_y=True)
    np.testing.assert_array_equal(X, crowd.data)
    np.testing.assert_array_equal(Z, crowd.annotations)
    easy = make_crowd_classification(**{**kw, "accuracy": 1.0})
    observed = easy.annotations >= 0
    assert (
        easy.annotations[observed] == np.broadcast_to(easy.target[:, None], (120, 5))[observed]
    ).mean() > 0.9


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"labels_per_sample": 0}, "labels_per_sample"),
        ({"labels_per_sample": (2, 9)}, "labels_per_sample"),
        ({"labels_per_sample": 2.5}, "labels_per_sample"),
        ({"accuracy": 1.5}, "accuracy"),
        ({"accuracy": (0.9, 0.2)}, "accuracy"),
        ({"kinds": "expert"}, "Unknown annotator kind"),
        ({"kinds": ["class", "random"]}, "kinds has 2 entries"),
        ({"n_regions": 0}, "n_regions"),
        ({"n_annotators": 0}, "n_annotators"),
        ({"n_classes": 2}, r"class indices in \[0, n_classes=2\)"),
    ],
)
def test_invalid_arguments_say_what_is_allowed(kwargs, match):
    y = np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match=match):
        simulate_annotators(np.zeros((4, 1)), y, **{"n_annotators": 3, "labels_per_sample": 2, **kwargs})


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="X has 3 samples but y has 4"):
        simulate_annotators(np.zeros((3, 1)), [0, 1, 0, 1])


@pytest.mark.parametrize("missing_label", [0, 2, np.int64(1)])
def test_a_missing_label_that_is_a_class_is_refused(missing_label):
    with pytest.raises(ValueError, match=f"missing_label={missing_label} is also a class"):
        simulate_annotators(np.zeros((4, 1)), [0, 1, 2, 0], n_annotators=3, missing_label=missing_label)


@pytest.mark.parametrize("missing_label", [np.nan, None, "x", True, 1.0])
def test_a_missing_label_that_is_not_an_int_is_refused(missing_label):
    with pytest.raises(ValueError, match="must be an int outside"):
        simulate_annotators(np.zeros((4, 1)), [0, 1, 2, 0], n_annotators=3, missing_label=missing_label)


def test_a_missing_label_outside_the_classes_marks_the_missing_entries():
    y = np.array([0, 1, 2, 0])
    Z, _ = simulate_annotators(np.zeros((4, 1)), y, n_annotators=3, labels_per_sample=2, missing_label=3)
    assert (Z == 3).sum() == 4 and set(np.unique(Z[Z != 3])) <= {0, 1, 2}


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_instance_annotators_refuse_non_finite_features(bad):
    X = np.arange(8, dtype=float).reshape(4, 2)
    X[1, 0] = bad
    with pytest.raises(ValueError, match="X contains NaN or infinite values"):
        simulate_annotators(X, [0, 1, 0, 1], n_annotators=2, labels_per_sample=1, kinds="instance")
    # class-dependent annotators never read X
    simulate_annotators(X, [0, 1, 0, 1], n_annotators=2, labels_per_sample=1, kinds="class")
