import pickle

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

from skannot import AggregateClassifier, AnnotMixClassifier
from skannot._testing import small_settings
from skannot.datasets import simulate_annotators

FAST = small_settings(
    AnnotMixClassifier, max_epochs=3, hidden_sizes=(32, 16), annotator_embed_dim=8, annotator_hidden_size=8
)


@pytest.fixture(scope="module")
def fitted(crowd_data):
    X, _, Z, _ = crowd_data
    return AnnotMixClassifier(max_epochs=30, random_state=0).fit(X, Z)


def test_fit_returns_self_and_sets_fitted_attributes(crowd_data):
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(**FAST, random_state=0)
    assert clf.fit(X, Z) is clf
    assert clf.n_features_in_ == 5 and clf.n_annotators_ == 6
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    np.testing.assert_array_equal(clf.annotator_names_, np.arange(6))
    assert clf.annotator_confusion_.shape == (6, 3, 3)
    assert clf.annotator_accuracy_.shape == (6,)
    assert len(clf.history_) == 3 and np.isfinite(clf.history_[:, "train_loss"]).all()
    assert clf.device_ == torch.device("cpu")


def test_predictions_are_probabilities_over_classes(fitted, crowd_data):
    X = crowd_data[0]
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.exp(fitted.predict_log_proba(X)), proba, rtol=1e-5)
    np.testing.assert_array_equal(fitted.predict(X), fitted.classes_[proba.argmax(1)])


def test_annotator_outputs_are_normalised(fitted, crowd_data):
    X = crowd_data[0]
    np.testing.assert_allclose(fitted.annotator_confusion_.sum(-1), 1, rtol=1e-6)
    proba = fitted.predict_annotator_proba(X[:7])
    assert proba.shape == (7, 6, 3)
    np.testing.assert_allclose(proba.sum(-1), 1, rtol=1e-5)
    some = fitted.predict_annotator_proba(X[:7], annotators=[4, 1])
    np.testing.assert_allclose(some, proba[:, [4, 1]], rtol=1e-5)
    with pytest.raises(ValueError, match="annotators must lie"):
        fitted.predict_annotator_proba(X[:2], annotators=[6])


def test_beats_majority_vote_and_ranks_annotators(fitted, crowd_data):
    X, y, Z, confusion = crowd_data
    X_test, y_test = X[400:], y[400:]
    clf = AnnotMixClassifier(max_epochs=30, random_state=0).fit(X[:400], Z[:400])
    mlp = AggregateClassifier(max_epochs=30, random_state=0).fit(X[:400], Z[:400])
    annot_mix = clf.score(X_test, y_test)
    majority = np.mean(mlp.predict(X_test) == y_test)
    assert annot_mix >= majority + 0.04, (annot_mix, majority)

    observed = Z >= 0
    true_accuracy = np.array([np.mean(Z[observed[:, m], m] == y[observed[:, m]]) for m in range(Z.shape[1])])
    assert spearmanr(true_accuracy, fitted.annotator_accuracy_).statistic >= 0.85
    # Every pair of annotators whose true accuracies differ by more than 0.05 is in the right order
    # (two of them are 0.51 and 0.52 here, within the noise of their 300 labels).
    apart = np.abs(true_accuracy[:, None] - true_accuracy[None, :]) > 0.05
    true_order = np.sign(true_accuracy[:, None] - true_accuracy[None, :])
    estimated = fitted.annotator_accuracy_
    np.testing.assert_array_equal(np.sign(estimated[:, None] - estimated[None, :])[apart], true_order[apart])
    estimated_diagonal = np.diagonal(fitted.annotator_confusion_, axis1=1, axis2=2)
    assert np.abs(estimated_diagonal - np.diagonal(confusion, axis1=1, axis2=2)).mean() < 0.15


def test_string_labels_and_explicit_classes(crowd_data):
    X, _, Z, _ = crowd_data
    names = np.array(["ant", "bee", "cow"], dtype=object)
    Z_str = np.where(Z >= 0, names[np.maximum(Z, 0)], None)
    clf = AnnotMixClassifier(**FAST, classes=["ant", "bee", "cow", "dog"], random_state=0).fit(X, Z_str)
    np.testing.assert_array_equal(clf.classes_, ["ant", "bee", "cow", "dog"])
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.predict_proba(X).shape == (len(X), 4)


def test_one_dimensional_y_is_a_single_annotator(crowd_data):
    X, y, _, _ = crowd_data
    clf = AnnotMixClassifier(**FAST, random_state=0).fit(X, y)
    assert clf.n_annotators_ == 1
    assert clf.score(X, y) == pytest.approx(np.mean(clf.predict(X) == y))


def test_score_counts_each_observed_annotation(fitted, crowd_data):
    X, _, Z, _ = crowd_data
    y_pred = fitted.predict(X)
    observed = Z >= 0
    expected = np.mean(np.broadcast_to(y_pred[:, None], Z.shape)[observed] == Z[observed])
    assert fitted.score(X, Z) == pytest.approx(expected)


def test_random_state_makes_fits_reproducible_and_restores_torch_rng(crowd_data):
    X, _, Z, _ = crowd_data
    state = torch.random.get_rng_state()
    a = AnnotMixClassifier(**FAST, random_state=7).fit(X, Z)
    b = AnnotMixClassifier(**FAST, random_state=7).fit(X, Z)
    c = AnnotMixClassifier(**FAST, random_state=8).fit(X, Z)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


def test_pickle_round_trip_predicts_identically(fitted, crowd_data):
    X = crowd_data[0]
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(restored.annotator_confusion_, fitted.annotator_confusion_)


def test_unfitted_estimator_refuses_to_predict(crowd_data):
    with pytest.raises(NotFittedError):
        AnnotMixClassifier().predict(crowd_data[0])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"eta": 0.2}, r"eta=0.2 must lie in \(1/n_classes, 1\)"),
        ({"eta": 1.0}, "eta"),
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:99"}, "cuda"),
        ({"hidden_sizes": ()}, "hidden_sizes"),
        ({"batch_size": 1}, "batch_size"),
    ],
)
def test_bad_parameters_raise_value_errors(params, message, crowd_data):
    X, _, Z, _ = crowd_data
    with pytest.raises(ValueError, match=message):
        AnnotMixClassifier(**{**FAST, **params}).fit(X, Z)


@pytest.mark.parametrize(
    "X_change, Z_change, message",
    [
        (lambda X: X[:-1], lambda Z: Z, "X has 599 samples but Z has 600 rows"),
        (lambda X: np.where(X > 2, np.nan, X), lambda Z: Z, "NaN"),
        (lambda X: np.where(X > 2, np.inf, X), lambda Z: Z, "infinity"),
        (lambda X: X, lambda Z: np.full_like(Z, -1), "no observed label"),
        (lambda X: X, lambda Z: Z[:, :, None], "3 dimensions"),
        (lambda X: X, lambda Z: np.where(Z >= 0, 1, -1), "single class"),
    ],
)
def test_bad_input_raises_value_errors(X_change, Z_change, message, crowd_data):
    X, _, Z, _ = crowd_data
    with pytest.raises(ValueError, match=message):
        AnnotMixClassifier(**FAST).fit(X_change(X), Z_change(Z))


def test_labels_outside_explicit_classes_are_refused(crowd_data):
    X, _, Z, _ = crowd_data
    with pytest.raises(ValueError, match="not in classes"):
        AnnotMixClassifier(**FAST, classes=[0, 1]).fit(X, Z)


def test_nested_parameters_reach_the_optimizer_and_survive_clone(crowd_data):
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(**FAST, optimizer__weight_decay=0.01, random_state=0)
    assert clf.get_params()["optimizer__weight_decay"] == 0.01
    clf.set_params(optimizer__weight_decay=0.02, alpha=0.5)
    twin = clone(clf)
    assert twin.get_params()["optimizer__weight_decay"] == 0.02 and twin.alpha == 0.5
    twin.fit(X, Z)
    assert twin.net_.optimizer_.param_groups[0]["weight_decay"] == 0.02
    with pytest.raises(TypeError, match="unexpected keyword"):
        AnnotMixClassifier(weight_decay=0.1)


class TinyBackbone(nn.Module):
    def __init__(self, n_features, n_classes, width=4):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, width), nn.Tanh())
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        embedding = self.body(x)
        return self.head(embedding), embedding


def test_custom_backbone_class_and_instance(crowd_data):
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(TinyBackbone, module__width=6, **FAST, random_state=0).fit(X, Z)
    assert clf.net_.module_.gt_model.head.in_features == 6
    instance = TinyBackbone(5, 3, width=3)
    before = [p.clone() for p in instance.parameters()]
    AnnotMixClassifier(instance, **FAST, random_state=0).fit(X, Z)
    assert all(torch.equal(a, b) for a, b in zip(before, instance.parameters()))


def test_backbone_breaking_the_contract_is_explained(crowd_data):
    X, _, Z, _ = crowd_data
    with pytest.raises(ValueError, match=r"must return \(logits, embedding\)"):
        AnnotMixClassifier(nn.Linear(5, 3), **FAST).fit(X, Z)


def test_warm_start_continues_training(crowd_data):
    X, _, Z, _ = crowd_data
    clf = AnnotMixClassifier(**FAST, warm_start=True, random_state=0).fit(X, Z)
    weights = clf.net_.module_.annotator_embedding.weight.detach().clone()
    module = clf.net_.module_
    clf.set_params(lr=0.005, max_epochs=2)
    clf.fit(X, Z)
    assert clf.net_.module_ is module
    assert len(clf.history_) == 2
    assert clf.net_.optimizer_.param_groups[0]["initial_lr"] == 0.005
    assert not torch.equal(weights, module.annotator_embedding.weight)
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(X, Z[:, :4])


def test_unlabelled_annotator_is_modelled_as_the_average_annotator(crowd_data):
    X, _, Z, _ = crowd_data
    Z = np.hstack([Z, np.full((len(Z), 1), -1)])
    clf = AnnotMixClassifier(**FAST, random_state=0).fit(X, Z)
    module = clf.net_.module_
    table = module.annotator_embedding.weight.detach()
    with torch.no_grad():
        vectors = module.annotator_vectors(torch.arange(7))
    torch.testing.assert_close(vectors[-1], table[:-1].mean(0))
    torch.testing.assert_close(vectors[:-1], table[:-1])
    # the summary leaves the parameters alone: the unlabelled row keeps its initial value
    assert not torch.allclose(table[-1], table[:-1].mean(0))
    assert clf.n_labels_per_annotator_[-1] == 0
    assert np.isfinite(clf.annotator_confusion_[-1]).all()
    np.testing.assert_allclose(clf.annotator_confusion_[-1].sum(-1), 1, rtol=1e-6)


def test_samples_without_labels_are_left_out_of_training(crowd_data):
    X, _, Z, _ = crowd_data
    Z = Z.copy()
    Z[:100] = -1
    clf = AnnotMixClassifier(**FAST, batch_size=50, random_state=0).fit(X, Z)
    assert clf.history_[-1, "train_batch_count"] == 10


def test_verbose_prints_the_loss_per_epoch(crowd_data, capsys):
    X, _, Z, _ = crowd_data
    AnnotMixClassifier(**FAST, verbose=1, random_state=0).fit(X, Z)
    out = capsys.readouterr().out
    assert "train_loss" in out and out.count("\n") >= 3


def test_simulated_annotators_follow_their_confusion_matrices():
    y = np.random.default_rng(0).integers(0, 3, 30000)
    Z, confusion = simulate_annotators(
        np.zeros((len(y), 1)), y, n_annotators=4, labels_per_sample=2, random_state=0
    )
    assert ((Z >= 0).sum(1) == 2).all()
    for m in range(4):
        observed = Z[:, m] >= 0
        for c in range(3):
            rows = observed & (y == c)
            empirical = np.bincount(Z[rows, m], minlength=3) / rows.sum()
            np.testing.assert_allclose(empirical, confusion[m, c], atol=0.03)


def test_annotator_confusion_is_the_posterior_weighted_mean_and_accuracy_the_mean_support(fitted, crowd_data):
    X, _, Z, _ = crowd_data
    module = fitted.net_.module_.eval()
    with torch.no_grad():
        _, log_class = module.annotator_log_proba(torch.from_numpy(X), torch.arange(6))
        _, embedding = module.gt_model(torch.from_numpy(X))
        log_confusion = module.log_confusion(
            embedding.repeat_interleave(6, 0), torch.arange(6).repeat(len(X))
        )
        log_confusion = log_confusion.view(len(X), 6, 3, 3)
    class_proba, confusion = log_class.exp().double().numpy(), log_confusion.exp().double().numpy()
    for m in range(6):
        rows = Z[:, m] >= 0
        weights = class_proba[rows]
        expected = np.einsum("iy,iyz->yz", weights, confusion[rows, m]) / weights.sum(0)[:, None]
        np.testing.assert_allclose(fitted.annotator_confusion_[m], expected, rtol=1e-4, atol=1e-6)
    # The accuracy is the mean support of the annotator's labels (see test_consensus.py for the support).
    support = fitted.label_quality(X, Z).groupby("annotator")["support"].mean()
    np.testing.assert_allclose(fitted.annotator_accuracy_, support.loc[np.arange(6)], rtol=1e-6)
