"""The contract every estimator of the family keeps, checked on each of them."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from skannot._testing import ESTIMATORS, small, small_crowd, small_settings

# Why some of scikit-learn's checks fail for every estimator of the family.
EXPECTED_FAILURES = {
    "check_fit_score_takes_y": "fit and score name their target Z (the annotation matrix); "
    "scikit-learn passes it positionally everywhere, so meta-estimators are unaffected.",
    "check_n_features_in_after_fitting": "calls score(X, y=...) by keyword, which the name Z refuses; "
    "the feature-count checks themselves are tested in test_sklearn_integration.py.",
    "check_do_not_raise_errors_in_init_or_set_params": "passes a parameter literally named 'kwargs' "
    "(from the skorch-style **kwargs), which is refused as an unknown nested parameter.",
    "check_classifiers_classes": "uses -1 as a class label, which is the default missing_label; "
    "missing_label=None accepts it (tested in test_sklearn_integration.py).",
    "check_classifier_multioutput": "a 2-D Z holds several annotators' labels of one target, so "
    "predict returns one label per sample, not one per column.",
    "check_sample_weight_equivalence_on_dense_data": "calls fit(X, y=..., sample_weight=...) by keyword, "
    "which the name Z refuses; what weights do is tested in test_training_control.py.",
}

# Small but able to learn the checks' blobs (training accuracy > 0.83 is checked).
CHECKED = [
    cls(**small_settings(cls, max_epochs=15, batch_size=16, lr=0.03, random_state=0)) for cls in ESTIMATORS
]


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def data():
    return small_crowd()


@pytest.fixture(scope="module", params=ESTIMATORS, ids=lambda cls: cls.__name__)
def fitted(request, data):
    X, _, Z = data
    return small(request.param, random_state=0).fit(X, Z)


def test_fit_returns_self_and_fitted_attributes_have_their_shapes(fitted, data):
    X, _, Z = data
    assert fitted.n_annotators_ == 4 and fitted.n_features_in_ == 3
    np.testing.assert_array_equal(fitted.classes_, [0, 1, 2])
    proba = fitted.predict_proba(X[:7])
    assert proba.shape == (7, 3)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(fitted.predict_log_proba(X[:7]), np.log(proba), rtol=1e-4, atol=1e-6)
    assert set(fitted.predict(X)) <= {0, 1, 2}
    assert fitted.annotator_confusion_.shape == (4, 3, 3)
    np.testing.assert_allclose(fitted.annotator_confusion_.sum(-1), 1, rtol=1e-6)
    assert fitted.annotator_accuracy_.shape == (4,)
    assert ((fitted.annotator_accuracy_ >= 0) & (fitted.annotator_accuracy_ <= 1)).all()
    annotator_proba = fitted.predict_annotator_proba(X[:5])
    assert annotator_proba.shape == (5, 4, 3)
    np.testing.assert_allclose(annotator_proba.sum(-1), 1, rtol=1e-5)
    assert fitted.predict_annotator_proba(X[:5], annotators=[2]).shape == (5, 1, 3)
    assert 0 <= fitted.score(X, Z) <= 1
    np.testing.assert_array_equal(fitted.n_labels_per_annotator_, (Z >= 0).sum(0))
    assert len(fitted.history_) == fitted.max_epochs


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_clone_and_nested_parameters(cls):
    estimator = cls(optimizer__weight_decay=1e-4, max_epochs=3)
    copy = clone(estimator)
    assert copy.get_params()["optimizer__weight_decay"] == 1e-4
    assert copy.get_params()["max_epochs"] == 3
    copy.set_params(max_epochs=4, optimizer__weight_decay=0.0)
    assert copy.max_epochs == 4 and copy.get_params()["optimizer__weight_decay"] == 0.0
    assert estimator.get_params()["optimizer__weight_decay"] == 1e-4
    with pytest.raises(TypeError, match="nested"):
        cls(not_a_parameter=1)


def test_pickle_round_trip_predicts_the_same(fitted, data):
    X, _, _ = data
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(restored.annotator_confusion_, fitted.annotator_confusion_)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_random_state_makes_fits_reproducible_and_leaves_torch_alone(cls, data):
    X, _, Z = data
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = small(cls, random_state=3).fit(X, Z)
    assert torch.equal(torch.random.get_rng_state(), before)
    second = small(cls, random_state=3).fit(X, Z)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    np.testing.assert_array_equal(first.annotator_confusion_, second.annotator_confusion_)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_bad_input_is_refused_with_value_errors(cls, data):
    X, _, Z = data
    estimator = small(cls)
    with pytest.raises(NotFittedError):
        estimator.predict(X)
    bad = [
        (X[:-1], Z, "rows"),
        (np.where(np.arange(X.size).reshape(X.shape) == 4, np.nan, X), Z, "NaN"),
        (X, np.zeros_like(Z), "single class"),
        (X, np.full_like(Z, -1), "no observed label"),
        (X, Z[:, :, None], "dimensions"),
    ]
    for X_bad, Z_bad, message in bad:
        with pytest.raises(ValueError, match=message):
            small(cls).fit(X_bad, Z_bad)
    with pytest.raises(ValueError, match="max_epochs"):
        small(cls, max_epochs=-1).fit(X, Z)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_string_labels_and_named_annotators(cls, data):
    X, _, Z = data
    names = np.array(["cat", "dog", "eel"])
    Z_named = pd.DataFrame(np.where(Z >= 0, names[np.maximum(Z, 0)], None), columns=list("abcd"))
    estimator = small(cls, random_state=0).fit(X, Z_named)
    np.testing.assert_array_equal(estimator.classes_, names)
    np.testing.assert_array_equal(estimator.annotator_names_, list("abcd"))
    assert set(estimator.predict(X)) <= set(names)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_warm_start_continues_from_the_fitted_weights(cls, data):
    X, _, Z = data
    estimator = small(cls, random_state=0, warm_start=True).fit(X, Z)
    weights = [p.detach().clone() for p in estimator.net_.module_.parameters()]
    estimator.set_params(max_epochs=1).fit(X, Z)
    assert len(estimator.history_) == 1
    after = list(estimator.net_.module_.parameters())
    assert any(not torch.equal(w, p) for w, p in zip(weights, after))
    cold = small(cls, random_state=0, max_epochs=1).fit(X, Z)
    assert not np.allclose(cold.predict_proba(X), estimator.predict_proba(X))


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_plain_and_fast_paths_train_the_same_kind_of_model(cls, data):
    """Turning the CPU fast paths off changes random streams and rounding, not what is learned."""
    import skannot

    X, y, Z = data
    with skannot.config_context(fast_paths=False):
        plain = small(cls, random_state=0, max_epochs=20).fit(X, Z)
    assert plain.fast_paths_ == frozenset()
    fast = small(cls, random_state=0, max_epochs=20).fit(X, Z)
    assert fast.fast_paths_ == frozenset(skannot.FAST_PATHS)
    assert abs(np.mean(plain.predict(X) == y) - np.mean(fast.predict(X) == y)) < 0.1


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_fit_refuses_dataframes_whose_indexes_pair_the_wrong_rows(cls, data):
    X, _, Z = data
    X_frame = pd.DataFrame(X, index=[f"t{i}" for i in range(len(X))])
    Z_frame = pd.DataFrame(Z, index=X_frame.index[::-1])
    with pytest.raises(ValueError, match="index"):
        small(cls).fit(X_frame, Z_frame)
    small(cls).fit(X_frame, Z_frame.loc[X_frame.index])
