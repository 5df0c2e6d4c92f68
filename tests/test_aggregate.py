"""The two-stage baseline: aggregation, then cross-entropy (with optional mixup) on the result."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from skannot import AggregateClassifier
from skannot._aggregation import annotator_confusion, dawid_skene, majority_vote_labels
from skannot._nn import MLP
from skannot._testing import small_settings
from skannot._validation import check_annotations
from skannot.classifiers._aggregate import AggregateModule

SETTINGS = small_settings(AggregateClassifier, max_epochs=20, hidden_sizes=(32,), random_state=0)


def test_loss_is_cross_entropy_and_mixup_mixes_instances_and_one_hot_labels():
    torch.manual_seed(0)
    module = AggregateModule(MLP(4, 3, (5,), dropout=0.0, batch_norm=False), np.full((2, 3, 3), 1 / 3))
    x = torch.randn(6, 4)
    rows, labels = torch.arange(6), torch.tensor([0, 2, 1, 1, 0, 2])
    loss, _ = module.training_loss(x, rows, torch.zeros(6, dtype=torch.long), labels)
    log_p = F.log_softmax(module.gt_model(x)[0], 1).detach().numpy()
    assert loss.item() == pytest.approx(-np.mean(log_p[np.arange(6), labels.numpy()]), rel=1e-5)

    lam, partner = torch.rand(6), torch.randperm(6)
    loss, _ = module.training_loss(x, rows, torch.zeros(6, dtype=torch.long), labels, lam, partner)
    expected = 0.0
    for i in range(6):
        l_, j = lam[i].item(), partner[i].item()
        x_mixed = l_ * x[i] + (1 - l_) * x[j]
        log_q = F.log_softmax(module.gt_model(x_mixed[None])[0], 1)[0].detach().numpy()
        expected -= (l_ * log_q[labels[i]] + (1 - l_) * log_q[labels[j]]) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_annotator_matrices_are_the_aggregations_estimate(crowd_data):
    X, _, Z, _ = crowd_data
    annotations, _, _ = check_annotations(Z)
    ds = AggregateClassifier(aggregation="dawid_skene", **SETTINGS).fit(X, Z)
    table = ds.net_.module_.log_confusion_table.exp().numpy()
    np.testing.assert_allclose(table, dawid_skene(annotations, 3).confusion, rtol=1e-5)
    # a fixed matrix per annotator: its p(y | x)-weighted summary is that matrix
    np.testing.assert_allclose(ds.annotator_confusion_, table, rtol=1e-4, atol=1e-6)

    mv = AggregateClassifier(**SETTINGS).fit(X, Z)
    labels = majority_vote_labels(annotations, 3, np.random.RandomState(0))
    expected = annotator_confusion(annotations, np.eye(3)[labels], 3)
    np.testing.assert_allclose(mv.net_.module_.log_confusion_table.exp().numpy(), expected, rtol=1e-5)


def test_dawid_skene_beats_majority_vote_against_a_biased_majority(crowd_data):
    """Three annotators always call class 0 class 1; two experts are right 95 % of the time."""
    X, y, _, _ = crowd_data
    rng = np.random.default_rng(0)
    biased = np.repeat(np.where(y == 0, 1, y)[:, None], 3, axis=1)
    experts = np.where(rng.random((len(y), 2)) < 0.95, y[:, None], rng.integers(0, 3, (len(y), 2)))
    Z = np.hstack([biased, experts])
    mv = AggregateClassifier(**SETTINGS).fit(X, Z)
    ds = AggregateClassifier(aggregation="dawid_skene", **SETTINGS).fit(X, Z)
    assert np.mean(mv.predict(X) == y) < 0.75  # class 0 is lost to the majority
    assert np.mean(ds.predict(X) == y) > 0.9


def test_gold_labels_train_a_plain_classifier_and_mixup_changes_the_fit(crowd_data):
    X, y, _, _ = crowd_data
    plain = AggregateClassifier(**SETTINGS).fit(X, y)
    assert np.mean(plain.predict(X) == y) > 0.9
    assert plain.n_annotators_ == 1
    mixed = AggregateClassifier(alpha=1.0, **SETTINGS).fit(X, y)
    assert np.mean(mixed.predict(X) == y) > 0.9
    assert not np.allclose(plain.predict_proba(X), mixed.predict_proba(X))


def test_ties_are_broken_by_random_state():
    X = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    Z = np.stack([np.zeros(200, int), np.ones(200, int)], axis=1)  # every sample a tie
    first = AggregateClassifier(**{**SETTINGS, "random_state": 1}).fit(X, Z)
    again = AggregateClassifier(**{**SETTINGS, "random_state": 1}).fit(X, Z)
    np.testing.assert_array_equal(first.predict_proba(X), again.predict_proba(X))
    annotations, _, _ = check_annotations(Z)
    labels = majority_vote_labels(annotations, 2, np.random.RandomState(1))
    assert 0.35 < labels.mean() < 0.65  # both classes win ties


def test_bad_aggregation_is_refused(crowd_data):
    X, _, Z, _ = crowd_data
    with pytest.raises(ValueError, match="aggregation"):
        AggregateClassifier(aggregation="median").fit(X, Z)
    with pytest.raises(ValueError, match="alpha"):
        AggregateClassifier(alpha=-1).fit(X, Z)
