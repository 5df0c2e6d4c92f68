"""The class-dependent methods: crowd layer, trace-reg, GeoCrowdNet (F, W) and UnionNet."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from skannot import (
    AggregateClassifier,
    CrowdLayerClassifier,
    GeoCrowdNetClassifier,
    TraceRegClassifier,
    UnionNetClassifier,
)
from skannot._nn import ConfusionTable
from skannot.classifiers._crowd_layer import CrowdLayerModule
from skannot.classifiers._geo_crowd_net import GeoCrowdNetModule, neg_log_det
from skannot.classifiers._trace_reg import TraceRegModule
from skannot.classifiers._union_net import UnionNetModule

SMALL = {"hidden_sizes": (32,), "max_epochs": 5}
ESTIMATORS = {
    "crowd_layer": lambda **kw: CrowdLayerClassifier(**kw),
    "trace_reg": lambda **kw: TraceRegClassifier(**kw),
    "geo_f": lambda **kw: GeoCrowdNetClassifier(regularization="F", **kw),
    "geo_w": lambda **kw: GeoCrowdNetClassifier(regularization="W", **kw),
    "union_net": lambda **kw: UnionNetClassifier(**kw),
}


class LinearGT(nn.Module):
    """A deterministic GT model: logits from one linear layer, the input as embedding."""

    def __init__(self, n_features, n_classes):
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x):
        return self.linear(x), x


def softmax(a, axis=-1):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture
def tiny_batch():
    """5 instances, 3 classes, 4 annotators and 8 observed pairs."""
    torch.manual_seed(0)
    x = torch.randn(5, 2)
    rows = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4])
    annotators = torch.tensor([0, 3, 1, 0, 2, 3, 1, 2])
    labels = torch.tensor([2, 0, 1, 1, 2, 0, 0, 2])
    return x, rows, annotators, labels


def randomised(module):
    torch.manual_seed(1)
    with torch.no_grad():
        module.confusion.weight.normal_(0, 1.5)
    return module


def numpy_inputs(module, x):
    with torch.no_grad():
        logits = module.gt_model(x)[0].double().numpy()
    return softmax(logits), module.confusion.weight.detach().double().numpy()


def pair_nll(class_proba, rows, annotators, labels, proba_of_label):
    """Mean over pairs of -log proba_of_label(p(. | x), annotator, label), written out pair by pair."""
    losses = [
        -math.log(proba_of_label(class_proba[i], m, z))
        for i, m, z in zip(rows.tolist(), annotators.tolist(), labels.tolist())
    ]
    return float(np.mean(losses))


# -- (a) the loss against a direct computation ----------------------------------------------------------


def test_crowd_layer_loss_is_the_cross_entropy_of_softmax_w_p(tiny_batch):
    x, rows, annotators, labels = tiny_batch
    module = randomised(CrowdLayerModule(LinearGT(2, 3), n_annotators=4, n_classes=3))
    loss, _ = module.training_loss(x, rows, annotators, labels)
    p, W = numpy_inputs(module, x)
    expected = pair_nll(p, rows, annotators, labels, lambda p_i, m, z: softmax(p_i @ W[m])[z])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_trace_reg_loss_is_the_nll_plus_the_mean_trace(tiny_batch):
    x, rows, annotators, labels = tiny_batch
    module = randomised(TraceRegModule(LinearGT(2, 3), n_annotators=4, n_classes=3, reg_lambda=0.3))
    loss, _ = module.training_loss(x, rows, annotators, labels)
    p, logits = numpy_inputs(module, x)
    A = softmax(logits)
    nll = pair_nll(p, rows, annotators, labels, lambda p_i, m, z: sum(p_i[y] * A[m, y, z] for y in range(3)))
    mean_trace = np.mean([np.trace(A[m]) for m in range(4)])
    assert loss.item() == pytest.approx(nll + 0.3 * mean_trace, rel=1e-5)


@pytest.mark.parametrize("regularization", ["F", "W"])
def test_geo_crowd_net_loss_is_the_nll_plus_the_log_determinant(tiny_batch, regularization):
    x, rows, annotators, labels = tiny_batch
    module = randomised(
        GeoCrowdNetModule(
            LinearGT(2, 3), n_annotators=4, n_classes=3, regularization=regularization, reg_lambda=0.2
        )
    )
    loss, _ = module.training_loss(x, rows, annotators, labels)
    p, logits = numpy_inputs(module, x)
    A = softmax(logits)
    nll = pair_nll(p, rows, annotators, labels, lambda p_i, m, z: sum(p_i[y] * A[m, y, z] for y in range(3)))
    if regularization == "F":
        matrix = p  # (B, C)
    else:
        # (M C, C): annotator m's confusion matrix transposed, so that column y holds the rows y
        matrix = np.vstack([A[m].T for m in range(4)])
    sign, logdet = np.linalg.slogdet(matrix.T @ matrix)
    assert sign > 0
    assert loss.item() == pytest.approx(nll - 0.2 * logdet, rel=1e-5)


def test_union_net_loss_is_the_nll_of_the_union_transition_matrix(tiny_batch):
    x, rows, annotators, labels = tiny_batch
    module = randomised(UnionNetModule(LinearGT(2, 3), n_annotators=4, n_classes=3))
    loss, _ = module.training_loss(x, rows, annotators, labels)
    p, logits = numpy_inputs(module, x)
    # T[y, m C + z]: row y a softmax over all 4 x 3 (annotator, label) entries
    T = softmax(np.concatenate([logits[m] for m in range(4)], axis=1))
    expected = pair_nll(p, rows, annotators, labels, lambda p_i, m, z: p_i @ T[:, m * 3 + z])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_per_annotator_confusion_is_the_row_softmax_of_the_table(tiny_batch):
    x, _, annotators, _ = tiny_batch
    module = randomised(UnionNetModule(LinearGT(2, 3), n_annotators=4, n_classes=3))
    log_confusion = module.log_confusion(x[annotators], annotators)
    expected = softmax(module.confusion.weight.detach().double().numpy())[annotators.numpy()]
    np.testing.assert_allclose(log_confusion.exp().detach().numpy(), expected, rtol=1e-5)


MODULES = {
    "crowd_layer": lambda: CrowdLayerModule(LinearGT(2, 3), n_annotators=4, n_classes=3),
    "trace_reg": lambda: TraceRegModule(LinearGT(2, 3), n_annotators=4, n_classes=3),
    "geo_f": lambda: GeoCrowdNetModule(LinearGT(2, 3), n_annotators=4, n_classes=3, regularization="F"),
    "geo_w": lambda: GeoCrowdNetModule(LinearGT(2, 3), n_annotators=4, n_classes=3, regularization="W"),
    "union_net": lambda: UnionNetModule(LinearGT(2, 3), n_annotators=4, n_classes=3),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_likelihood_and_penalty_stay_in_float32_under_bfloat16_autocast(name, tiny_batch):
    # mixed_precision=True runs the training step under autocast; the loss must stay in float32
    x, rows, annotators, _ = tiny_batch
    module = randomised(MODULES[name]())
    logits = torch.randn(5, 3)
    expected_log_proba = module.annotation_log_proba(logits[rows], x[rows], annotators)
    expected_penalty = module.penalty(logits, annotators)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_proba = module.annotation_log_proba(logits[rows], x[rows], annotators)
        penalty = module.penalty(logits, annotators)
    assert log_proba.dtype == torch.float32
    torch.testing.assert_close(log_proba, expected_log_proba)
    torch.testing.assert_close(torch.as_tensor(penalty), torch.as_tensor(expected_penalty))


# -- (b) initialisation -------------------------------------------------------------------------------


def row_softmax_of(init):
    return softmax(np.asarray(init, dtype=float))


@pytest.mark.parametrize(
    "name, init_logits",
    [
        ("crowd_layer", np.eye(3)),
        ("trace_reg", 6 * np.eye(3) - 5),
        ("geo_f", np.eye(3)),
        ("geo_w", np.eye(3)),
        ("union_net", (1 - 1e-5) * np.eye(3) + 1e-5 / 2 * (1 - np.eye(3))),
    ],
)
def test_matrices_at_initialisation(name, init_logits, crowd_data):
    X, _, Z, _ = crowd_data
    clf = ESTIMATORS[name](**{**SMALL, "max_epochs": 0}, random_state=0).fit(X, Z)
    weight = clf.net_.module_.confusion.weight.detach().double().numpy()
    np.testing.assert_allclose(weight, np.broadcast_to(init_logits, (6, 3, 3)), rtol=1e-6)
    expected = np.broadcast_to(row_softmax_of(init_logits), (6, 3, 3))
    np.testing.assert_allclose(clf.annotator_confusion_, expected, rtol=1e-6)


def test_initial_diagonals_have_their_documented_values():
    e = math.e
    assert row_softmax_of(6 * np.eye(10) - 5)[0, 0] == pytest.approx(e**6 / (e**6 + 9))
    assert row_softmax_of(np.eye(10))[0, 0] == pytest.approx(e / (e + 9))
    assert round(e / (e + 9), 2) == 0.23 and round(e**6 / (e**6 + 9), 2) == 0.98


def test_union_net_blocks_start_with_equal_shares_of_each_row():
    module = UnionNetModule(LinearGT(2, 4), n_annotators=5, n_classes=4, epsilon=0.1)
    T = module.log_transition().exp().detach().numpy()  # [m, y, z] = T[y, m C + z]
    np.testing.assert_allclose(T.sum(axis=(0, 2)), 1, rtol=1e-6)
    np.testing.assert_allclose(T.sum(axis=2), 1 / 5, rtol=1e-6)
    block = row_softmax_of(0.9 * np.eye(4) + 0.1 / 3 * (1 - np.eye(4)))
    np.testing.assert_allclose(T * 5, np.broadcast_to(block, (5, 4, 4)), rtol=1e-5)


# -- (c) known annotator noise: better than majority vote --------------------------------------------------


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_beats_majority_vote_on_simulated_annotators(name, crowd_data):
    X, y, Z, _ = crowd_data
    settings = {"hidden_sizes": (32,), "max_epochs": 30}
    clf = ESTIMATORS[name](**settings, random_state=0).fit(X[:400], Z[:400])
    mlp = AggregateClassifier(**settings, random_state=0).fit(X[:400], Z[:400])
    majority = np.mean(mlp.predict(X[400:]) == y[400:])
    accuracy = clf.score(X[400:], y[400:])
    assert accuracy >= majority + 0.04, (accuracy, majority)


# -- the family's summaries and predictions for a per-annotator matrix -------------------------------


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_summaries_are_the_learned_matrices(name, crowd_data):
    X, _, Z, _ = crowd_data
    clf = ESTIMATORS[name](**SMALL, random_state=0).fit(X, Z)
    learned = softmax(clf.net_.module_.confusion.weight.detach().double().numpy())
    np.testing.assert_allclose(clf.annotator_confusion_, learned, rtol=1e-5, atol=1e-7)
    # annotator_accuracy_ is the mean support of each annotator's labels (the family's definition)
    quality = clf.label_quality(X, Z)
    support = quality.groupby("annotator")["support"].mean()
    np.testing.assert_allclose(clf.annotator_accuracy_, support.loc[clf.annotator_names_], rtol=1e-4)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_annotator_probabilities_are_normalised(name, crowd_data):
    X, _, Z, _ = crowd_data
    clf = ESTIMATORS[name](**SMALL, random_state=0).fit(X, Z)
    proba = clf.predict_annotator_proba(X[:7])
    assert proba.shape == (7, 6, 3)
    np.testing.assert_allclose(proba.sum(-1), 1, rtol=1e-5)
    if name != "crowd_layer":  # the mixture of the confusion rows by p(y | x)
        expected = np.einsum("iy,myz->imz", clf.predict_proba(X[:7]), clf.annotator_confusion_)
        np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)
    else:
        W = clf.net_.module_.confusion.weight.detach().numpy()
        expected = softmax(np.einsum("iy,myz->imz", clf.predict_proba(X[:7]), W))
        np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_unlabelled_annotator_is_modelled_as_the_average_annotator(name, crowd_data):
    X, _, Z, _ = crowd_data
    Z = np.hstack([Z, np.full((len(Z), 1), -1)])
    clf = ESTIMATORS[name](**SMALL, random_state=0).fit(X, Z)
    weight = clf.net_.module_.confusion.weight.detach().double().numpy()
    average = softmax(weight[:-1].mean(0))
    np.testing.assert_allclose(clf.annotator_confusion_[-1], average, rtol=1e-5)
    # the summary leaves the parameters alone
    assert not np.allclose(weight[-1], weight[:-1].mean(0))
    assert clf.n_labels_per_annotator_[-1] == 0


def test_confusion_table_reads_its_own_rows_in_training_mode():
    table = ConfusionTable(3, torch.zeros(2, 2))
    with torch.no_grad():
        table.weight.copy_(torch.arange(12.0).view(3, 2, 2))
    table.mark_labelled(torch.tensor([True, True, False]))
    torch.testing.assert_close(table(torch.tensor([2])), table.weight[[2]])
    table.eval()
    torch.testing.assert_close(table(torch.tensor([2, 0]))[0], table.weight[:2].mean(0))
    torch.testing.assert_close(table(torch.tensor([2, 0]))[1], table.weight[0])


@pytest.mark.parametrize("cls", [TraceRegClassifier, GeoCrowdNetClassifier])
def test_warm_start_applies_the_current_regulariser_weight(cls, crowd_data):
    X, _, Z, _ = crowd_data
    clf = cls(**SMALL, random_state=0).fit(X, Z)
    clf.set_params(warm_start=True, reg_lambda=0.5).fit(X, Z)
    assert clf.net_.module_.reg_lambda == 0.5


# -- (d) parameter validation and GeoCrowdNet's skip of a non-finite log-determinant ---------------------


@pytest.mark.parametrize(
    "cls, params, message",
    [
        (TraceRegClassifier, {"reg_lambda": -0.1}, "reg_lambda"),
        (TraceRegClassifier, {"reg_lambda": "auto"}, "reg_lambda"),
        (GeoCrowdNetClassifier, {"reg_lambda": -1.0}, "reg_lambda"),
        (GeoCrowdNetClassifier, {"regularization": "trace"}, "regularization"),
        (GeoCrowdNetClassifier, {"regularization": "F", "batch_size": 2}, "batch_size=2"),
        (UnionNetClassifier, {"epsilon": 1.0}, "epsilon"),
        (UnionNetClassifier, {"epsilon": -1e-3}, "epsilon"),
        (CrowdLayerClassifier, {"batch_size": 1}, "batch_size"),
    ],
)
def test_bad_parameters_raise_value_errors(cls, params, message, crowd_data):
    X, _, Z, _ = crowd_data
    with pytest.raises(ValueError, match=message):
        cls(**{**SMALL, **params}).fit(X, Z)


def test_neg_log_det_of_a_positive_definite_matrix():
    torch.manual_seed(0)
    a = torch.randn(6, 3, dtype=torch.float64)
    gram = (a.T @ a).requires_grad_()
    value = neg_log_det(gram)
    assert value.item() == pytest.approx(-torch.logdet(gram).item())
    value.backward()
    torch.testing.assert_close(gram.grad, -torch.linalg.inv(gram.detach()))


def test_neg_log_det_of_a_singular_matrix_is_zero_with_a_zero_gradient():
    a = torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]])  # rank 1
    gram = (a.T @ a).requires_grad_()
    assert not torch.isfinite(-torch.logdet(gram.detach()))
    value = neg_log_det(gram)
    value.backward()
    assert value.item() == 0
    assert torch.equal(gram.grad, torch.zeros(3, 3))


def test_f_regulariser_of_a_batch_smaller_than_the_classes_is_skipped():
    module = GeoCrowdNetModule(LinearGT(2, 3), n_annotators=2, n_classes=3, regularization="F")
    logits = torch.randn(2, 3, requires_grad=True)  # 2 instances: F^T F has rank 2 < 3
    penalty = module.penalty(logits, torch.tensor([0, 1]))
    penalty.backward()
    assert penalty.item() == 0 and torch.equal(logits.grad, torch.zeros(2, 3))


def test_geo_crowd_net_trains_through_batches_whose_log_determinant_is_not_finite(crowd_data):
    X, _, Z, _ = crowd_data
    # 600 = 2 x 299 + 2: every epoch ends with a batch of 2 instances, fewer than the 3 classes
    clf = GeoCrowdNetClassifier(hidden_sizes=(8,), max_epochs=2, batch_size=299, random_state=0).fit(X, Z)
    assert clf.history_[-1, "train_batch_count"] == 3
    assert np.isfinite(clf.history_[:, "train_loss"]).all()


def test_crowd_layer_projected_loss_equals_the_per_pair_loss():
    """Few annotators: p @ W for every (instance, annotator) at once gives the per-pair loss and gradients."""
    from skannot._nn import MLP
    from skannot._nn._base import CrowdModule
    from skannot.classifiers._crowd_layer import CrowdLayerModule

    torch.manual_seed(0)
    module = CrowdLayerModule(MLP(4, 3, (5,), dropout=0.0, batch_norm=False), n_annotators=2, n_classes=3)
    with torch.no_grad():
        module.confusion.weight.normal_()
    x = torch.randn(6, 4)
    rows = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 5])
    annotators = torch.tensor([0, 1, 1, 0, 0, 1, 1, 0, 1])
    labels = torch.tensor([2, 0, 1, 1, 0, 2, 2, 1, 0])
    fast, _ = module.training_loss(x, rows, annotators, labels)
    fast_grad = torch.autograd.grad(fast, module.confusion.weight)[0]
    plain, _ = CrowdModule.training_loss(module, x, rows, annotators, labels)
    plain_grad = torch.autograd.grad(plain, module.confusion.weight)[0]
    torch.testing.assert_close(fast, plain)
    torch.testing.assert_close(fast_grad, plain_grad)
