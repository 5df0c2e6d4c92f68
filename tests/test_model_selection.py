"""Model selection with noisy annotations only: searches, cross-validation, the splitter."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    StratifiedKFold,
    check_cv,
    cross_val_score,
    cross_validate,
)

from skannot import AnnotMixClassifier
from skannot._testing import small_settings
from skannot.metrics import annotation_accuracy_scorer, annotation_log_likelihood_scorer
from skannot.model_selection import AnnotationStratifiedKFold

TINY = small_settings(AnnotMixClassifier, hidden_sizes=(8,))


@pytest.fixture(scope="module")
def small(crowd_data):
    X, _, Z, _ = crowd_data
    return X[:150], Z[:150]


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_grid_search_over_alpha_scores_held_out_annotations(small, n_jobs):
    X, Z = small
    search = GridSearchCV(
        AnnotMixClassifier(**TINY, random_state=0), {"alpha": [0, 0.5, 1, 2]}, cv=5, n_jobs=n_jobs
    ).fit(X, Z)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))
    assert search.best_params_["alpha"] in (0, 0.5, 1, 2)
    assert search.best_estimator_.n_annotators_ == Z.shape[1]


def test_default_score_is_accuracy_against_held_out_annotations(small):
    X, Z = small
    clf = AnnotMixClassifier(**TINY, random_state=0)
    default = cross_val_score(clf, X, Z, cv=3)
    explicit = cross_val_score(clf, X, Z, cv=3, scoring=annotation_accuracy_scorer)
    np.testing.assert_array_equal(default, explicit)


def test_cross_validation_in_parallel_with_both_scorers(small):
    X, Z = small
    scoring = {"accuracy": annotation_accuracy_scorer, "log_likelihood": annotation_log_likelihood_scorer}
    result = cross_validate(AnnotMixClassifier(**TINY, random_state=0), X, Z, cv=5, scoring=scoring, n_jobs=2)
    assert np.all((result["test_accuracy"] >= 0) & (result["test_accuracy"] <= 1))
    assert np.all(np.isfinite(result["test_log_likelihood"]) & (result["test_log_likelihood"] < 0))


def test_grid_search_with_log_likelihood_scoring(small):
    X, Z = small
    search = GridSearchCV(
        AnnotMixClassifier(**TINY, random_state=0),
        {"alpha": [0.0, 1.0]},
        cv=3,
        scoring=annotation_log_likelihood_scorer,
    ).fit(X, Z)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


def test_folds_where_an_annotator_has_no_label(small):
    X, Z = small
    Z = Z.copy()
    Z[30:, 5] = -1  # annotator 5 labels only the first fold of KFold(5)
    Z[:30, 4] = -1  # annotator 4 labels nothing in the first fold
    scoring = {"accuracy": annotation_accuracy_scorer, "log_likelihood": annotation_log_likelihood_scorer}
    result = cross_validate(
        AnnotMixClassifier(**TINY, random_state=0), X, Z, cv=KFold(5), scoring=scoring, error_score="raise"
    )
    assert np.all(np.isfinite(result["test_log_likelihood"]))
    assert np.all(np.isfinite(result["test_accuracy"]))


def test_int_cv_on_a_matrix_falls_back_to_unshuffled_kfold(small):
    """What the docs say scikit-learn does with cv=5 and a 2-D Z."""
    X, Z = small
    assert type(check_cv(5, Z, classifier=True)) is KFold
    assert type(check_cv(5, (Z[:, :2] > 0).astype(int), classifier=True)) is KFold  # multilabel-like
    assert type(check_cv(5, Z[:, 0], classifier=True)) is StratifiedKFold  # 1-D: -1 is one more stratum
    with pytest.raises(ValueError, match="Supported target types"):
        next(StratifiedKFold(5).split(X, Z))


def test_kfold_can_leave_a_fold_without_labels_and_the_splitter_does_not(small):
    X, Z = small
    Z = Z.copy()
    Z[100:] = -1  # the last third is unlabelled, as in data sets extended with unlabelled rows
    with pytest.raises(ValueError, match="no observed label"):
        cross_val_score(AnnotMixClassifier(**TINY, random_state=0), X, Z, cv=KFold(3), error_score="raise")
    scores = cross_val_score(
        AnnotMixClassifier(**TINY, random_state=0), X, Z, cv=AnnotationStratifiedKFold(3), error_score="raise"
    )
    assert np.all(np.isfinite(scores))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n_samples=st.integers(4, 60),
    n_annotators=st.integers(1, 4),
    n_splits=st.integers(2, 5),
    shuffle=st.booleans(),
)
def test_splitter_partitions_rows_and_shares_out_labels_and_classes(
    data, n_samples, n_annotators, n_splits, shuffle
):
    Z = np.array(
        data.draw(
            st.lists(
                st.lists(st.integers(-1, 2), min_size=n_annotators, max_size=n_annotators),
                min_size=n_samples,
                max_size=n_samples,
            )
        )
    )
    labelled = (Z >= 0).any(1)
    cv = AnnotationStratifiedKFold(n_splits, shuffle=shuffle, random_state=0)
    X = np.zeros((n_samples, 1))
    if labelled.sum() < n_splits:
        with pytest.raises(ValueError):
            list(cv.split(X, Z))
        return
    folds = list(cv.split(X, Z))
    assert len(folds) == cv.get_n_splits() == n_splits
    tests = [test for _, test in folds]
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(n_samples))
    for train, test in folds:
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == n_samples
    assert max(map(len, tests)) - min(map(len, tests)) <= 1
    assert all(labelled[test].any() for test in tests)
    votes = np.stack([(Z == c).sum(1) for c in range(3)], axis=1)
    majority = np.where(labelled, votes.argmax(1), -1)
    for c in np.unique(majority):
        per_fold = [np.sum(majority[test] == c) for test in tests]
        assert max(per_fold) - min(per_fold) <= 1


def test_splitter_is_reproducible_and_shuffles_with_a_seed(small):
    X, Z = small
    plain = [test for _, test in AnnotationStratifiedKFold(3).split(X, Z)]
    seeded = [test for _, test in AnnotationStratifiedKFold(3, shuffle=True, random_state=1).split(X, Z)]
    again = [test for _, test in AnnotationStratifiedKFold(3, shuffle=True, random_state=1).split(X, Z)]
    assert all(np.array_equal(a, b) for a, b in zip(seeded, again))
    assert not all(np.array_equal(a, b) for a, b in zip(plain, seeded))


def test_splitter_reads_the_missing_label_and_explains_misuse():
    Z = np.array([["a", None], ["b", "b"], [None, None], ["a", "a"]], dtype=object)
    folds = list(AnnotationStratifiedKFold(2, missing_label=None).split(np.zeros((4, 1)), Z))
    assert all(np.isin(test, [0, 1, 3]).any() for _, test in folds)
    with pytest.raises(ValueError, match="needs the annotations"):
        list(AnnotationStratifiedKFold(2).split(np.zeros((4, 1)), None))
    with pytest.raises(ValueError, match="n_splits=1"):
        AnnotationStratifiedKFold(1)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        list(AnnotationStratifiedKFold(2).split(np.zeros((3, 1)), [[0], [1], [0], [1]]))
