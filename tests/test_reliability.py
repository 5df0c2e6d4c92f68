"""Reliability: bad input, sparse input, divergence, interruption, determinism, numerics.

Each input-validation test here is a row of the table in docs/reliability.md;
rows already covered elsewhere point to their tests in that table.
"""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import Callback

from skannot import AnnotMixClassifier
from skannot._nn import eta_bias
from skannot._testing import small_settings
from skannot._validation import annotations_from_coordinates, check_annotations
from skannot.classifiers._annot_mix import AnnotMixLoss
from skannot.exceptions import TrainingDivergedError

TINY = small_settings(AnnotMixClassifier, hidden_sizes=(8,), random_state=0)


@pytest.fixture(scope="module")
def small(crowd_data):
    X, _, Z, _ = crowd_data
    return X[:120], Z[:120]


def _to_sparse(Z, kind=sparse.csr_matrix):
    rows, cols = np.nonzero(Z >= 0)
    return kind((Z[rows, cols], (rows, cols)), shape=Z.shape)


# -- input validation (rows of the table in docs/reliability.md) --------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda X, Z: (X, np.int64(1)), "0 dimensions"),
        (lambda X, Z: (X, None), "Z is None"),
        (lambda X, Z: (X[:0], Z[:0]), "0 sample"),
        (lambda X, Z: (X[:1], Z[:1]), "single class"),
        (lambda X, Z: (X[:1], np.array([[0, 1, -1]])), "at least 2 samples with an observed label"),
        (lambda X, Z: (X, Z[:, :0]), "no annotator columns"),
        (lambda X, Z: (X, Z.astype(complex)), "dtype complex"),
        (lambda X, Z: (X, _to_sparse(Z)[:-1]), "X has 120 samples but Z has 119 rows"),
    ],
)
def test_degenerate_input_is_refused(make, message, small):
    with pytest.raises(ValueError, match=message):
        AnnotMixClassifier(**TINY).fit(*make(*small))


def _with_entry(Z, value, dtype):
    Z = Z.astype(dtype)
    Z[0, 0] = value
    return Z


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda Z: _with_entry(Z, "cat", object), "mixes string and numeric"),
        (lambda Z: _with_entry(Z, 1.5, float), "non-integral float labels such as 1.5"),
        (lambda Z: _with_entry(Z, np.inf, float), "infinite labels"),
        (lambda Z: np.where(Z >= 0, 4, -1), "single class"),
    ],
)
def test_bad_labels_are_refused_by_fit(make, message, small):
    X, Z = small
    with pytest.raises(ValueError, match=message):
        AnnotMixClassifier(**TINY).fit(X, make(Z))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"classes": [-1, 0, 1, 2]}, "missing_label=-1 is also a class label"),
        ({"classes": np.arange(1001)}, "1001 classes; AnnotMixClassifier supports at most 1000"),
        ({"classes": [0, 1, 1, 2]}, "duplicates"),
        ({"classes": ["a", "b"]}, "not in classes"),
    ],
)
def test_bad_class_sets_are_refused(params, message, small):
    with pytest.raises(ValueError, match=message):
        AnnotMixClassifier(**TINY, **params).fit(*small)


def test_classes_that_never_occur_get_a_probability_column(small):
    X, Z = small
    clf = AnnotMixClassifier(**TINY, classes=[0, 1, 2, 7]).fit(X, Z)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 4) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert clf.annotator_confusion_.shape == (6, 4, 4)


def test_predict_with_other_number_of_features_is_refused(small):
    X, Z = small
    clf = AnnotMixClassifier(**TINY).fit(X, Z)
    for method in (clf.predict, clf.predict_proba, clf.predict_annotator_proba):
        with pytest.raises(ValueError, match="X has 4 features, but AnnotMixClassifier is expecting 5"):
            method(X[:, :4])


def test_more_than_ten_thousand_annotators_just_work(small):
    X, Z = small
    wide = sparse.hstack([_to_sparse(Z), sparse.csr_matrix((len(Z), 10_000), dtype=Z.dtype)]).tocsr()
    clf = AnnotMixClassifier(**TINY).fit(X, wide)
    assert clf.n_annotators_ == 10_006
    assert clf.net_.module_.annotator_embedding.num_embeddings == 10_006
    assert clf.annotator_confusion_.shape == (10_006, 3, 3)
    assert np.isfinite(clf.annotator_confusion_).all()
    np.testing.assert_allclose(clf.annotator_confusion_.sum(-1), 1, rtol=1e-6)


# -- sparse and coordinate input ------------------------------------------------


@pytest.mark.parametrize("kind", [sparse.csr_matrix, sparse.csc_matrix, sparse.coo_matrix, sparse.csr_array])
def test_sparse_annotations_equal_the_dense_matrix(kind):
    Z = np.array([[0, -1, 1], [-1, -1, -1], [2, 2, -1], [-1, 0, -1]])
    expected, classes, _ = check_annotations(Z)
    got, sparse_classes, names = check_annotations(_to_sparse(Z, kind))
    np.testing.assert_array_equal(sparse_classes, classes)
    for field in ("indptr", "annotators", "labels"):
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field))
    assert got.n_annotators == 3 and names is None


def test_sparse_stored_zero_is_a_label():
    Z = sparse.csr_matrix((np.array([0, 1, 0]), (np.array([0, 1, 1]), np.array([0, 1, 2]))), shape=(2, 3))
    annotations, classes, _ = check_annotations(Z)
    np.testing.assert_array_equal(classes, [0, 1])
    np.testing.assert_array_equal(annotations.indptr, [0, 1, 3])
    np.testing.assert_array_equal(annotations.labels, [0, 1, 0])


@pytest.mark.parametrize("Z", [np.array([[0, -1], [1, 2]]), np.array([[0.0, np.nan], [1.0, 2.0]])])
def test_sparse_matrix_converted_from_dense_is_refused(Z):
    # csr_matrix(Z) keeps -1/NaN for the missing entries and drops the 0 labels.
    with pytest.raises(ValueError, match="stores missing values"):
        check_annotations(sparse.csr_matrix(Z))


def test_sparse_fit_matches_dense_fit(small):
    X, Z = small
    dense = AnnotMixClassifier(**TINY).fit(X, Z)
    from_sparse = AnnotMixClassifier(**TINY).fit(X, _to_sparse(Z))
    np.testing.assert_array_equal(from_sparse.predict_proba(X), dense.predict_proba(X))
    assert from_sparse.score(X, _to_sparse(Z)) == dense.score(X, Z)


def test_coordinates_in_any_order_give_csr_annotations():
    Z = np.array([[0, -1, 1], [-1, -1, -1], [2, 2, -1]])
    expected, _, _ = check_annotations(Z)
    got, classes = annotations_from_coordinates(
        [2, 0, 2, 0], [1, 2, 0, 0], ["c", "b", "c", "a"], shape=(3, 3), missing_label=None
    )
    np.testing.assert_array_equal(classes, ["a", "b", "c"])
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.annotators, expected.annotators)
    np.testing.assert_array_equal(got.labels, expected.labels)


@pytest.mark.parametrize(
    "samples, annotators, values, message",
    [
        ([0, 0], [1, 1], [0, 1], "Annotator 1 labels sample 0 more than once"),
        ([0, 3], [0, 0], [0, 1], r"sample indices must lie in \[0, 3\)"),
        ([0, 1], [0, -1], [0, 1], r"annotator indices must lie in \[0, 2\)"),
        ([0, 1], [0, 1], [0], "one entry per label"),
    ],
)
def test_bad_coordinates_are_refused(samples, annotators, values, message):
    with pytest.raises(ValueError, match=message):
        annotations_from_coordinates(samples, annotators, values, shape=(3, 2))


def test_duplicate_entries_of_a_coo_matrix_are_refused():
    Z = sparse.coo_matrix(([0, 1, 1], ([0, 0, 1], [1, 1, 0])), shape=(2, 2))
    with pytest.raises(ValueError, match="more than once"):
        check_annotations(Z)


# -- divergence and interruption --------------------------------------------------


def test_diverging_loss_raises_and_leaves_the_estimator_unfitted(small):
    X, Z = small
    state = torch.random.get_rng_state()
    clf = AnnotMixClassifier(**TINY, lr=1e30)
    with pytest.raises(TrainingDivergedError, match="training diverged. Lower lr") as info:
        clf.fit(X, Z)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FloatingPointError)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(NotFittedError):
        check_is_fitted(clf)
    with pytest.raises(NotFittedError):
        clf.predict(X)


def test_diverging_warm_start_forgets_the_earlier_fit(small):
    X, Z = small
    clf = AnnotMixClassifier(**TINY, warm_start=True).fit(X, Z)
    with torch.no_grad():
        clf.net_.module_.gt_model.head.bias.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="epoch 1, batch 1"):
        clf.fit(X, Z)
    assert not [name for name in vars(clf) if name.endswith("_") and not name.startswith("_")]


class _InterruptAfter(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise KeyboardInterrupt


def test_keyboard_interrupt_keeps_the_weights_reached(small):
    X, Z = small
    params = {**TINY, "max_epochs": 5}
    clf = AnnotMixClassifier(**params, callbacks=[_InterruptAfter(2)]).fit(X, Z)
    assert len(clf.history_) == 2
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert np.isfinite(clf.annotator_confusion_).all()
    # Two uninterrupted epochs of the same seed reach the same weights.
    two_epochs = AnnotMixClassifier(**params, callbacks=[_InterruptAfter(99)])
    two_epochs.set_params(max_epochs=2, lr_scheduler__T_max=5).fit(X, Z)
    np.testing.assert_array_equal(two_epochs.predict_proba(X), proba)


# -- determinism ------------------------------------------------------------------


def test_same_seed_same_predictions_across_fits_and_pickle(small):
    X, Z = small
    clf = AnnotMixClassifier(**TINY)
    first = clf.fit(X, Z).predict_proba(X)
    np.testing.assert_array_equal(clf.fit(X, Z).predict_proba(X), first)
    np.testing.assert_array_equal(AnnotMixClassifier(**TINY).fit(X, Z).predict_proba(X), first)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), first)


def test_different_seed_gives_different_weights(small):
    X, Z = small
    a = AnnotMixClassifier(**TINY).fit(X, Z).net_.module_.state_dict()
    b = AnnotMixClassifier(**{**TINY, "random_state": 1}).fit(X, Z).net_.module_.state_dict()
    assert not any(torch.equal(a[name], b[name]) for name in a if name.endswith("weight"))


# -- numerical safety -------------------------------------------------------------


def test_loss_is_finite_where_probabilities_underflow():
    # p(y | x) P(z | x, a, y) ~ exp(-2000): zero in float32, but not in log space.
    log_class_proba = torch.log_softmax(torch.tensor([[0.0, -1000.0]]), dim=1)
    log_confusion = torch.log_softmax(torch.tensor([[[0.0, -1000.0], [-1000.0, 0.0]]]), dim=-1)
    loss = AnnotMixLoss()(log_class_proba, log_confusion, torch.tensor([1]), torch.tensor([1]), torch.ones(1))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(1000 - np.log(2))


@pytest.mark.parametrize("n_classes", [2, 100])
@pytest.mark.parametrize("closeness", ["random", "perfect"])
def test_extreme_eta_keeps_outputs_finite_and_normalised(n_classes, closeness):
    eta = 1 / n_classes + 1e-6 if closeness == "random" else 1 - 1e-7
    bias = eta_bias(n_classes, eta).view(n_classes, n_classes)
    prior = torch.softmax(bias.double(), dim=1)
    torch.testing.assert_close(torch.diagonal(prior), torch.full((n_classes,), eta, dtype=torch.float64))

    rng = np.random.default_rng(0)
    y = rng.integers(0, n_classes, 300)
    X = (rng.normal(size=(300, 4)) + 0.05 * y[:, None]).astype(np.float32)
    Z = np.where(rng.random((300, 3)) < 0.7, y[:, None], rng.integers(0, n_classes, (300, 3)))
    clf = AnnotMixClassifier(**TINY, eta=eta, classes=np.arange(n_classes)).fit(X, Z)
    assert np.isfinite(clf.history_[:, "train_loss"]).all()
    for proba in (clf.predict_proba(X), clf.predict_annotator_proba(X[:20]), clf.annotator_confusion_):
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(-1), 1, rtol=1e-4)


# -- label types and markers that fit keeps (second round of adversarial testing) --


def _labels_as(Z, labels, missing):
    """Z with class c replaced by labels[c] and the missing entries by ``missing``, as objects."""
    out = np.array(labels, dtype=object)[np.where(Z >= 0, Z, 0)]
    out[Z < 0] = missing
    return out


@pytest.mark.parametrize(
    "make, params, expected",
    [
        (lambda Z: _labels_as(Z, [False, True, True], None), {}, np.array([False, True])),
        (
            lambda Z: pd.DataFrame(_labels_as(Z, [2**60, 2**60 + 1, 2**60 + 2], pd.NA)).astype("Int64"),
            {},
            np.array([2**60, 2**60 + 1, 2**60 + 2]),
        ),
        (
            lambda Z: _labels_as(Z, ["a", "b", "c"], pd.NA),
            {"missing_label": pd.NA},
            np.array(["a", "b", "c"]),
        ),
        (lambda Z: _labels_as(Z, ["a", "b", "c"], "-1"), {"missing_label": "-1"}, np.array(["a", "b", "c"])),
    ],
    ids=["bool-with-None", "Int64-beyond-2**53", "missing_label=pd.NA", "missing_label='-1'"],
)
def test_label_types_survive_fit(make, params, expected, small):
    X, Z = small
    clf = AnnotMixClassifier(**TINY, **params).fit(X, make(np.where(Z >= 0, Z % 3, -1)))
    assert clf.classes_.dtype == expected.dtype
    np.testing.assert_array_equal(clf.classes_, expected)
    assert set(clf.predict(X).tolist()) <= set(expected.tolist())


def test_string_missing_marker_is_refused_by_fit(small):
    X, Z = small
    with pytest.raises(ValueError, match="pass missing_label='-1'"):
        AnnotMixClassifier(**TINY).fit(X, Z.astype(str))


# -- second round: a diverged last step, threads, estimator-side errors ------------------------------


def _tiny_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    Z = rng.integers(0, 3, (40, 3))
    Z[rng.random((40, 3)) < 0.3] = -1
    return X, Z


def test_a_loss_that_diverges_on_the_last_step_leaves_the_estimator_unfitted():
    """The loss is checked before each step; the weights the last step leaves must be checked too."""
    X, Z = _tiny_data()
    clf = AnnotMixClassifier(**{**TINY, "max_epochs": 1, "batch_size": 64, "lr": 1e30})
    with pytest.raises(TrainingDivergedError):
        clf.fit(X, Z)
    with pytest.raises(NotFittedError):
        check_is_fitted(clf)


def test_finite_weights_with_overflowing_outputs_are_a_divergence():
    X = np.array([[1e29, -1e29, 3e29], [2e29, 1e29, -1e29], [-3e29, 2e29, 1e29]], dtype=np.float32)
    Z = np.array([[0, 1, -1], [1, 0, 1], [0, 0, 1]])
    clf = AnnotMixClassifier(**{**TINY, "max_epochs": 1, "batch_size": 2, "batch_norm": False})
    try:
        clf.fit(X, Z)
    except TrainingDivergedError:
        with pytest.raises(NotFittedError):
            check_is_fitted(clf)
    else:
        assert np.isfinite(clf.predict_proba(X)).all() and np.isfinite(clf.annotator_confusion_).all()


def test_fits_in_threads_are_bit_identical_to_a_sequential_fit():
    import threading

    X, Z = _tiny_data()
    settings = {**TINY, "max_epochs": 3, "alpha": 0.5}
    sequential = AnnotMixClassifier(**settings).fit(X, Z).predict_proba(X)
    results = [None] * 4

    def fit(i):
        results[i] = AnnotMixClassifier(**settings).fit(X, Z).predict_proba(X)

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, sequential)


def test_a_background_fit_leaves_the_callers_torch_draws_alone():
    """While a fit trains in a thread, the caller's draws from torch's global generator are its own."""
    import threading

    X, Z = _tiny_data()
    training, drawn = threading.Event(), threading.Event()

    class Pause(Callback):
        def on_epoch_end(self, net, **kwargs):
            if not training.is_set():
                training.set()
                drawn.wait(timeout=30)

    torch.manual_seed(11)
    expected = torch.rand(1000)
    clf = AnnotMixClassifier(**{**TINY, "max_epochs": 3, "callbacks": [("pause", Pause())]})
    thread = threading.Thread(target=clf.fit, args=(X, Z))
    thread.start()
    assert training.wait(timeout=30)
    torch.manual_seed(11)
    got = torch.rand(1000)
    drawn.set()
    thread.join()
    assert torch.equal(got, expected)


def test_grid_search_under_the_threading_backend_gives_the_same_scores_each_run():
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    from skannot.model_selection import AnnotationStratifiedKFold

    X, Z = _tiny_data()
    scores = []
    for _ in range(2):
        search = GridSearchCV(
            AnnotMixClassifier(**{**TINY, "max_epochs": 2}),
            {"alpha": [0.0, 1.0]},
            cv=AnnotationStratifiedKFold(3, shuffle=True, random_state=0),
            n_jobs=2,
        )
        with parallel_backend("threading", n_jobs=2):
            search.fit(X, Z)
        scores.append(search.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(scores[0], scores[1])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"lr_scheduler__T_max": 0}, "T_max"),
        ({"callbacks__nope__x": 1}, "nope"),
    ],
)
def test_nested_parameters_that_cannot_work_are_refused(params, message):
    X, Z = _tiny_data()
    with pytest.raises(ValueError, match=message):
        AnnotMixClassifier(**TINY, **params).fit(X, Z)


def test_predict_on_a_read_only_float32_frame_warns_nothing():
    import warnings

    X, Z = _tiny_data()
    clf = AnnotMixClassifier(**TINY).fit(X, Z)
    frame = pd.DataFrame(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict_proba(frame)
        AnnotMixClassifier(**TINY).fit(frame, Z)
