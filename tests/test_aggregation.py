"""Label aggregation: vote shares, majority vote with random ties, Dawid-Skene EM."""

import numpy as np
import pytest

from skannot._aggregation import (
    DawidSkeneResult,
    dawid_skene,
    majority_vote_labels,
    vote_posteriors,
)
from skannot._validation import check_annotations
from skannot.annotations import dawid_skene as public_dawid_skene
from skannot.datasets import simulate_annotators


def simulated(n_samples, n_classes, n_annotators, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_samples)
    Z, confusion = simulate_annotators(
        np.zeros((n_samples, 1)),
        y,
        n_annotators=n_annotators,
        accuracy=(0.3, 0.95),
        labels_per_sample=3,
        n_classes=n_classes,
        random_state=seed,
    )
    annotations, _, _ = check_annotations(Z, classes=np.arange(n_classes))
    return y, Z, confusion, annotations


@pytest.fixture(scope="module")
def crowd():
    return simulated(2000, 3, 8, seed=0)


def loop_em_step(Z, posteriors, n_classes, smoothing):
    """One M-step then one E-step of Dawid & Skene, written out with loops over a dense Z."""
    n_samples, n_annotators = Z.shape
    labelled = [i for i in range(n_samples) if (Z[i] >= 0).any()]
    confusion = np.zeros((n_annotators, n_classes, n_classes))
    for m in range(n_annotators):
        for k in range(n_classes):
            for label in range(n_classes):
                confusion[m, k, label] = smoothing + sum(
                    posteriors[i, k] for i in range(n_samples) if Z[i, m] == label
                )
            confusion[m, k] /= confusion[m, k].sum()
    priors = np.array([smoothing + sum(posteriors[i, k] for i in labelled) for k in range(n_classes)])
    priors /= priors.sum()
    joint = np.zeros((n_samples, n_classes))
    for i in range(n_samples):
        for k in range(n_classes):
            joint[i, k] = priors[k]
            for m in range(n_annotators):
                if Z[i, m] >= 0:
                    joint[i, k] *= confusion[m, k, Z[i, m]]
    evidence = joint.sum(axis=1)
    return joint / evidence[:, None], confusion, priors, np.log(evidence).sum()


TINY_Z = np.array(
    [
        [0, 0, 1, -1],
        [1, -1, 1, 2],
        [2, 2, 0, -1],
        [-1, -1, -1, -1],
        [0, 1, -1, 0],
        [1, 1, 1, -1],
    ]
)


@pytest.mark.parametrize("smoothing", [0.0, 0.5])
def test_em_steps_match_a_loop_based_computation(smoothing):
    annotations, _, _ = check_annotations(TINY_Z)
    votes = np.zeros((6, 3))
    for i, row in enumerate(TINY_Z):
        for label in row[row >= 0]:
            votes[i, label] += 1
    expected = np.where(
        votes.sum(1, keepdims=True) > 0, votes / np.maximum(votes.sum(1, keepdims=True), 1), 1 / 3
    )
    log_likelihoods = []
    for n_iter in (1, 2, 3):
        expected, confusion, priors, log_likelihood = loop_em_step(TINY_Z, expected, 3, smoothing)
        if smoothing:
            log_likelihood += smoothing * (np.log(confusion).sum() + np.log(priors).sum())
        log_likelihoods.append(log_likelihood)
        result = dawid_skene(annotations, 3, max_iter=n_iter, tol=0.0, smoothing=smoothing)
        assert result.n_iter == n_iter and not result.converged
        np.testing.assert_allclose(result.posteriors, expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(result.confusion, confusion, rtol=1e-10)
        np.testing.assert_allclose(result.priors, priors, rtol=1e-10)
        np.testing.assert_allclose(result.log_likelihood, log_likelihoods, rtol=1e-10)


def test_beats_majority_vote_and_recovers_the_confusion_matrices(crowd):
    y, _, confusion, annotations = crowd
    result = dawid_skene(annotations, 3)
    assert isinstance(result, DawidSkeneResult) and result.converged
    ds_accuracy = np.mean(result.posteriors.argmax(axis=1) == y)
    mv_accuracy = np.mean(majority_vote_labels(annotations, 3, random_state=0) == y)
    # Measured: 0.834 against 0.801.
    assert ds_accuracy >= mv_accuracy + 0.02, (ds_accuracy, mv_accuracy)
    error = np.abs(result.confusion - confusion)
    assert error.mean() < 0.05 and error.max() < 0.15, (error.mean(), error.max())
    estimated_accuracy = np.einsum("mkk->m", result.confusion) / 3
    np.testing.assert_allclose(estimated_accuracy, np.einsum("mkk->m", confusion) / 3, atol=0.06)
    np.testing.assert_allclose(result.priors, np.bincount(y, minlength=3) / len(y), atol=0.05)


@pytest.mark.parametrize("smoothing", [0.0, 0.01, 1.0])
def test_objective_never_decreases(crowd, smoothing):
    result = dawid_skene(crowd[3], 3, max_iter=30, tol=0.0, smoothing=smoothing)
    assert result.log_likelihood.shape == (30,)
    assert np.all(np.diff(result.log_likelihood) >= -1e-9 * np.abs(result.log_likelihood[1:]))


def test_results_are_distributions_and_deterministic(crowd):
    annotations = crowd[3]
    result = dawid_skene(annotations, 3)
    np.testing.assert_allclose(result.posteriors.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(result.confusion.sum(axis=2), 1.0, rtol=1e-12)
    np.testing.assert_allclose(result.priors.sum(), 1.0, rtol=1e-12)
    assert result.posteriors.shape == (2000, 3) and result.confusion.shape == (8, 3, 3)
    again = dawid_skene(annotations, 3)
    np.testing.assert_array_equal(again.posteriors, result.posteriors)
    np.testing.assert_array_equal(again.confusion, result.confusion)


def test_stops_when_the_objective_settles(crowd):
    annotations = crowd[3]
    loose = dawid_skene(annotations, 3, tol=1e-3)
    strict = dawid_skene(annotations, 3, tol=1e-9, max_iter=500)
    assert loose.converged and strict.converged and loose.n_iter < strict.n_iter
    change = np.abs(np.diff(strict.log_likelihood)) / annotations.n_labels
    assert change[-1] < 1e-9 and np.all(change[:-1] >= 1e-9)
    capped = dawid_skene(annotations, 3, max_iter=3, tol=0.0)
    assert capped.n_iter == 3 and not capped.converged


@pytest.mark.parametrize(("n_classes", "n_annotators"), [(2, 8), (10, 12)])
def test_two_and_many_classes(n_classes, n_annotators):
    y, _, confusion, annotations = simulated(1500, n_classes, n_annotators, seed=0)
    result = dawid_skene(annotations, n_classes)
    assert result.posteriors.shape == (1500, n_classes)
    assert result.confusion.shape == (n_annotators, n_classes, n_classes)
    np.testing.assert_allclose(result.posteriors.sum(axis=1), 1.0, rtol=1e-12)
    ds_accuracy = np.mean(result.posteriors.argmax(axis=1) == y)
    mv_accuracy = np.mean(majority_vote_labels(annotations, n_classes, random_state=0) == y)
    assert ds_accuracy >= mv_accuracy, (ds_accuracy, mv_accuracy)
    diagonal_error = np.abs(np.einsum("mkk->mk", result.confusion) - np.einsum("mkk->mk", confusion))
    # About 37 labels per confusion row with 10 classes: a sampling error of about 0.07 each.
    assert diagonal_error.mean() < 0.08, diagonal_error.mean()


def test_samples_without_labels_get_the_priors_and_leave_the_rest_unchanged(crowd):
    _, Z, _, _ = crowd
    padded = np.vstack([Z, np.full((50, Z.shape[1]), -1)])
    annotations, _, _ = check_annotations(Z)
    with_empty, _, _ = check_annotations(padded)
    plain, result = dawid_skene(annotations, 3), dawid_skene(with_empty, 3)
    np.testing.assert_allclose(result.posteriors[-50:], np.tile(result.priors, (50, 1)), rtol=1e-12)
    np.testing.assert_allclose(result.posteriors[:-50], plain.posteriors, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(result.priors, plain.priors, rtol=1e-10)
    np.testing.assert_allclose(vote_posteriors(with_empty, 3)[-50:], 1 / 3)
    np.testing.assert_array_equal(majority_vote_labels(with_empty, 3, random_state=0)[-50:], -1)


@pytest.mark.parametrize("smoothing", [0.0, 0.01])
def test_annotators_without_labels_get_uniform_rows_and_change_nothing(crowd, smoothing):
    _, Z, _, _ = crowd
    widened = np.insert(Z, 2, -1, axis=1)
    annotations, _, _ = check_annotations(Z)
    with_idle, _, _ = check_annotations(widened)
    plain = dawid_skene(annotations, 3, smoothing=smoothing)
    result = dawid_skene(with_idle, 3, smoothing=smoothing)
    np.testing.assert_allclose(result.confusion[2], 1 / 3)
    np.testing.assert_allclose(np.delete(result.confusion, 2, axis=0), plain.confusion, rtol=1e-10)
    np.testing.assert_allclose(result.posteriors, plain.posteriors, rtol=1e-10, atol=1e-12)
    assert result.n_iter == plain.n_iter


def test_a_class_nobody_chose_gets_a_small_prior_and_finite_results():
    annotations, _, _ = check_annotations(TINY_Z, classes=[0, 1, 2, 3])
    for smoothing in (0.0, 0.01):
        result = dawid_skene(annotations, 4, smoothing=smoothing)
        assert np.all(np.isfinite(result.posteriors)) and np.all(np.isfinite(result.log_likelihood))
        assert result.priors[3] < 0.01
        np.testing.assert_allclose(result.posteriors.sum(axis=1), 1.0, rtol=1e-12)


def test_vote_posteriors_are_vote_shares():
    annotations, _, _ = check_annotations(TINY_Z)
    np.testing.assert_allclose(
        vote_posteriors(annotations, 3),
        [[2 / 3, 1 / 3, 0], [0, 2 / 3, 1 / 3], [1 / 3, 0, 2 / 3], [1 / 3] * 3, [2 / 3, 1 / 3, 0], [0, 1, 0]],
    )


def test_majority_vote_breaks_ties_uniformly_and_reproducibly():
    # 3,000 rows tied between all three classes, 3,000 tied between classes 0 and 2 (one vote for 1).
    Z = np.vstack([np.tile([0, 1, 2, -1, -1], (3000, 1)), np.tile([0, 0, 2, 2, 1], (3000, 1))])
    annotations, _, _ = check_annotations(Z)
    y = majority_vote_labels(annotations, 3, random_state=0)
    three, two = np.bincount(y[:3000], minlength=3), np.bincount(y[3000:], minlength=3)
    # Binomial standard deviations are about 26 and 27; allow 4.
    np.testing.assert_allclose(three, 1000, atol=110)
    assert two[1] == 0
    np.testing.assert_allclose(two, [1500, 0, 1500], atol=110)
    np.testing.assert_array_equal(majority_vote_labels(annotations, 3, random_state=0), y)
    rng = np.random.RandomState(0)
    np.testing.assert_array_equal(majority_vote_labels(annotations, 3, random_state=rng), y)
    assert np.any(majority_vote_labels(annotations, 3, random_state=1) != y)


def test_majority_vote_without_ties_is_the_most_frequent_label():
    annotations, _, _ = check_annotations(TINY_Z)
    y = majority_vote_labels(annotations, 3, random_state=0)
    np.testing.assert_array_equal(y, [0, 1, 2, -1, 0, 1])
    assert y.dtype.kind == "i"


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("max_iter", 0), ("max_iter", 2.5), ("tol", -1.0), ("smoothing", -0.1), ("smoothing", np.inf)],
)
def test_out_of_range_parameters_say_what_is_allowed(parameter, value):
    annotations, _, _ = check_annotations(TINY_Z)
    with pytest.raises(ValueError, match=f"{parameter}="):
        dawid_skene(annotations, 3, **{parameter: value})


def test_public_wrapper_orders_columns_by_sorted_classes(crowd):
    _, Z, _, annotations = crowd
    names = np.array(["dog", "cat", "bird"], dtype=object)  # class indices 0, 1, 2 sort as 2, 1, 0
    Z_names = np.where(Z >= 0, names[Z], None)
    expected = dawid_skene(annotations, 3).posteriors
    np.testing.assert_allclose(public_dawid_skene(Z_names, missing_label=None), expected[:, ::-1], rtol=1e-10)
    extended = public_dawid_skene(Z_names, missing_label=None, classes=["fish", "dog", "cat", "bird"])
    assert extended.shape == (2000, 4)  # columns: bird, cat, dog, fish
    np.testing.assert_array_equal(extended.argmax(axis=1), expected[:, ::-1].argmax(axis=1))
    assert extended[:, 3].max() < 1e-3
    with pytest.raises(ValueError, match="no observed label"):
        public_dawid_skene([[-1, -1]])
