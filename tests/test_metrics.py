import copy

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import DataConversionWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skannot import AnnotMixClassifier
from skannot._testing import small_settings
from skannot.metrics import (
    annotation_accuracy_score,
    annotation_accuracy_scorer,
    annotation_log_likelihood_scorer,
)

FAST = small_settings(AnnotMixClassifier, max_epochs=3)


@pytest.fixture(scope="module")
def split_data(crowd_data):
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(**FAST, random_state=0).fit(X[:300], Z[:300])
    return clf, X[300:400], Z[300:400]


def manual_log_likelihood(clf, X, Z):
    proba = clf.predict_annotator_proba(X)
    rows, annotators = np.nonzero(Z >= 0)
    return np.log(proba[rows, annotators, Z[rows, annotators]].astype(float))


def test_log_likelihood_is_the_mean_over_observed_annotations(split_data):
    clf, X, Z = split_data
    expected = manual_log_likelihood(clf, X, Z)
    assert annotation_log_likelihood_scorer(clf, X, Z) == pytest.approx(expected.mean(), rel=1e-5)
    assert -np.log(3) - 1 < expected.mean() < 0


def test_log_likelihood_ignores_missing_entries_and_unlabelled_annotators(split_data):
    clf, X, Z = split_data
    Z = Z.copy()
    Z[:, 2] = -1  # annotator 2 has no label in this fold
    as_float = np.where(Z >= 0, Z, np.nan)
    expected = manual_log_likelihood(clf, X, Z).mean()
    assert annotation_log_likelihood_scorer(clf, X, Z) == pytest.approx(expected, rel=1e-5)
    assert annotation_log_likelihood_scorer(clf, X, pd.DataFrame(as_float)) == pytest.approx(
        expected, rel=1e-5
    )


def test_log_likelihood_weights_the_labels_of_each_sample(split_data):
    clf, X, Z = split_data
    weights = np.linspace(0.5, 2.0, len(X))
    per_label = manual_log_likelihood(clf, X, Z)
    rows, _ = np.nonzero(Z >= 0)
    expected = np.average(per_label, weights=weights[rows])
    score = annotation_log_likelihood_scorer(clf, X, Z, sample_weight=weights)
    assert score == pytest.approx(expected, rel=1e-5)


def test_scorers_accept_a_pipeline_ending_in_annot_mix(crowd_data):
    X, _, Z, _ = crowd_data
    pipe = make_pipeline(StandardScaler(), AnnotMixClassifier(**FAST, random_state=0)).fit(X[:300], Z[:300])
    X_test, Z_test = X[300:400], Z[300:400]
    scaled = pipe[0].transform(X_test)
    assert annotation_log_likelihood_scorer(pipe, X_test, Z_test) == pytest.approx(
        annotation_log_likelihood_scorer(pipe[-1], scaled, Z_test)
    )
    assert annotation_accuracy_scorer(pipe, X_test, Z_test) == pipe.score(X_test, Z_test)


def test_accuracy_scorer_reads_missing_label_and_scores_any_classifier(split_data):
    clf, X, Z = split_data
    assert annotation_accuracy_scorer(clf, X, Z) == clf.score(X, Z)
    clf_nan = copy.deepcopy(clf).set_params(missing_label=None)
    as_float = np.where(Z >= 0, Z, np.nan)
    assert annotation_accuracy_scorer(clf_nan, X, as_float) == clf.score(X, Z)
    dummy = DummyClassifier(strategy="constant", constant=1).fit(X, np.ones(len(X), dtype=int))
    assert annotation_accuracy_scorer(dummy, X, Z) == pytest.approx(np.mean(Z[Z >= 0] == 1))


def test_accuracy_score_ignores_missing_and_weights_samples():
    Z = np.array([[0, 1], [1, -1], [1, 1]])
    assert annotation_accuracy_score(Z, [0, 1, 1]) == pytest.approx(0.8)
    assert annotation_accuracy_score(Z, [0, 1, 1], sample_weight=[0, 1, 1]) == 1.0
    assert annotation_accuracy_score(
        [["a", None], ["b", "b"]], ["a", "a"], missing_label=None
    ) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda Z: Z[:, :4], ValueError, "4 annotator columns but the estimator was fitted with 6"),
        (lambda Z: np.where(Z == 2, 7, Z), ValueError, "not in classes"),
        (lambda Z: np.full_like(Z, -1), ValueError, "no observed label"),
    ],
)
def test_log_likelihood_refuses_annotations_it_cannot_score(split_data, change, error, message):
    clf, X, Z = split_data
    with pytest.raises(error, match=message):
        annotation_log_likelihood_scorer(clf, X, change(Z))


def test_log_likelihood_needs_an_annotator_model(split_data):
    _, X, Z = split_data
    dummy = DummyClassifier().fit(X, Z[:, 0])
    with pytest.raises(TypeError, match="annotation_accuracy_scorer"):
        annotation_log_likelihood_scorer(dummy, X, Z)


def test_accuracy_score_ravels_a_column_vector_with_a_warning():
    Z = np.array([[0, 1], [1, -1], [1, 1]])
    with pytest.warns(DataConversionWarning, match="column vector"):
        assert annotation_accuracy_score(Z, np.array([[0], [1], [1]])) == pytest.approx(0.8)


@pytest.mark.parametrize(
    "y_pred, message",
    [
        (np.zeros((3, 2), dtype=int), r"y_pred must be 1-D .* got shape \(3, 2\)"),
        ([0, 1], "y_pred has 2 predictions but Z has 3 rows"),
        ([0, 1, 1, 0], "y_pred has 4 predictions but Z has 3 rows"),
        (["0", "1", "1"], "Mix of label input types: y_pred holds string labels but Z holds numeric"),
        (np.array([0, "1", 1], dtype=object), "y_pred holds mixed labels"),
    ],
)
def test_accuracy_score_refuses_predictions_that_do_not_fit_z(y_pred, message):
    with pytest.raises(ValueError, match=message):
        annotation_accuracy_score([[0, 1], [1, -1], [1, 1]], y_pred)


def test_accuracy_score_refuses_numeric_predictions_for_string_labels():
    with pytest.raises(ValueError, match="y_pred holds numeric labels but Z holds string labels"):
        annotation_accuracy_score([["a", "b"], ["b", "b"]], [0, 1])


@pytest.mark.parametrize(
    "sample_weight, message",
    [
        ([1, 1, 1, 1], r"sample_weight has shape \(4,\) but Z has 3 rows"),
        ([1, 1], r"sample_weight has shape \(2,\) but Z has 3 rows"),
        ([[1, 1, 1]], r"sample_weight has shape \(1, 3\)"),
        ([1, np.nan, 1], "finite, non-negative"),
        ([1, -1, 1], "finite, non-negative"),
        ([0, 0, 0], "gives every observed label a weight of 0"),
        ([0, 0, 0, 1], r"shape \(4,\)"),
        (["a", 1, 1], "sample_weight must be an array of numbers"),
    ],
)
def test_accuracy_score_refuses_bad_sample_weights(sample_weight, message):
    with pytest.raises(ValueError, match=message):
        annotation_accuracy_score([[0, 1], [1, -1], [1, 1]], [0, 1, 1], sample_weight=sample_weight)


def test_weights_only_on_unlabelled_samples_are_refused():
    with pytest.raises(ValueError, match="weight of 0"):
        annotation_accuracy_score([[0, 1], [-1, -1], [1, 1]], [0, 1, 1], sample_weight=[0, 5, 0])


def test_score_and_scorers_refuse_zero_weights(split_data):
    clf, X, Z = split_data
    zero = np.zeros(len(X))
    for score in (
        lambda: clf.score(X, Z, sample_weight=zero),
        lambda: annotation_accuracy_scorer(clf, X, Z, sample_weight=zero),
        lambda: annotation_log_likelihood_scorer(clf, X, Z, sample_weight=zero),
    ):
        with pytest.raises(ValueError, match="weight of 0"):
            score()
    with pytest.raises(ValueError, match="sample_weight has shape"):
        annotation_log_likelihood_scorer(clf, X, Z, sample_weight=np.ones(len(X) + 1))
