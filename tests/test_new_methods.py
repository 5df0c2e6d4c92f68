"""CoNAL, MaDL and CrowdAR: losses against direct computations, initialisation, simulated noise."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from skannot import AggregateClassifier, CoNALClassifier, CrowdARClassifier, MaDLClassifier
from skannot._nn import AnnotatorEmbedding, OuterProduct, eta_bias
from skannot.classifiers._conal import CoNALModule
from skannot.classifiers._crowd_ar import CrowdARModule
from skannot.classifiers._madl import MaDLModule

SMALL = {"hidden_sizes": (32,), "max_epochs": 5}
ESTIMATORS = {"conal": CoNALClassifier, "madl": MaDLClassifier, "crowd_ar": CrowdARClassifier}


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


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def array(tensor):
    return tensor.detach().double().numpy()


@pytest.fixture
def tiny_batch():
    """5 instances with 2 features, 3 classes, 4 annotators and 8 observed pairs."""
    torch.manual_seed(0)
    x = torch.randn(5, 2)
    rows = torch.tensor([0, 0, 1, 2, 2, 3, 4, 4])
    annotators = torch.tensor([0, 3, 1, 0, 2, 3, 1, 2])
    labels = torch.tensor([2, 0, 1, 1, 2, 0, 0, 2])
    return x, rows, annotators, labels


def randomise(module, scale=1.0):
    """Every parameter drawn at random, so that no term of a loss vanishes by symmetry."""
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, scale)
    return module


def pairs(rows, annotators, labels):
    return zip(rows.tolist(), annotators.tolist(), labels.tolist())


# -- (a) each loss against a direct computation, pair by pair ---------------------------------------------


def test_conal_loss_is_the_cross_entropy_of_the_mixed_layers_minus_the_distances(tiny_batch):
    x, rows, annotators, labels = tiny_batch
    module = CoNALModule(LinearGT(2, 3), 4, instance_dim=2, n_classes=3, embed_dim=5, reg_lambda=0.1)
    randomise(module)
    loss, _ = module.training_loss(x, rows, annotators, labels)

    p = softmax(array(module.gt_model(x)[0]))
    X = x.double().numpy()
    U, c = array(module.instance_projection.weight), array(module.instance_projection.bias)
    V, b = array(module.annotator_embedding.weight), array(module.annotator_embedding.bias)
    W, common = array(module.individual.weight), array(module.common)
    losses = []
    for i, m, z in pairs(rows, annotators, labels):
        u = U @ X[i] + c
        v = V[m] + b
        omega = sigmoid(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
        losses.append(-math.log(softmax(omega * p[i] @ common + (1 - omega) * p[i] @ W[m])[z]))
    distances = sum(np.linalg.norm(W[m] - common) for m in range(4))
    assert loss.item() == pytest.approx(np.mean(losses) - 0.1 * distances, rel=1e-5)


def batch_norm(h, weight, bias, eps=1e-5):
    """Batch normalisation in training mode: batch statistics, biased variance."""
    return (h - h.mean(0)) / np.sqrt(h.var(0) + eps) * weight + bias


def test_madl_loss_is_the_weighted_marginal_nll_plus_the_bandwidth_prior(tiny_batch):
    x, rows, annotators, labels = tiny_batch
    module = MaDLModule(LinearGT(2, 3), 4, instance_dim=2, n_classes=3, embed_dim=4, hidden_size=6, eta=0.8)
    randomise(module, scale=0.5)
    with torch.no_grad():
        module.bandwidth.fill_(0.7)
    loss, _ = module.training_loss(x, rows, annotators, labels)

    X = x.double().numpy()
    p = softmax(array(module.gt_model(x)[0]))
    head = module.annotator_head
    A = array(module.annotator_embedding.weight) + array(module.annotator_embedding.bias)
    e = X[rows.numpy()] @ array(head.instance_projection.weight).T + array(head.instance_projection.bias)
    a = A[annotators.numpy()]
    s = a + e
    outer = np.einsum("pe,kef,pf->pk", s, array(head.outer_product.weight), s)
    first, norm1, _, second, norm2 = head.hidden
    h = np.concatenate([a, e, outer], 1) @ array(first.weight).T + array(first.bias)
    h = np.maximum(batch_norm(h, array(norm1.weight), array(norm1.bias)), 0)
    h = batch_norm(h @ array(second.weight).T + array(second.bias), array(norm2.weight), array(norm2.bias))
    h = np.maximum(h + a, 0)
    confusion = softmax((h @ array(head.output.weight).T + array(head.output.bias)).reshape(-1, 3, 3))

    distances = ((A[:, None, :] - A[None, :, :]) ** 2).sum(-1)
    inverse = 1 / np.exp(-0.7 * distances).sum(0)
    weights = inverse / inverse.mean()
    nll = [
        -weights[m] * math.log(p[i] @ confusion[k, :, z])
        for k, (i, m, z) in enumerate(pairs(rows, annotators, labels))
    ]
    shape, rate = 1.25, 0.25
    log_prior = shape * math.log(rate) - math.lgamma(shape) + (shape - 1) * math.log(0.7) - rate * 0.7
    assert loss.item() == pytest.approx(np.mean(nll) - log_prior, rel=1e-5)


def test_crowd_ar_loss_is_the_soft_label_cross_entropy_and_the_reliability_term(tiny_batch):
    x, rows, annotators, labels = tiny_batch
    module = randomise(CrowdARModule(LinearGT(2, 3), 4, instance_dim=2, n_classes=3, hidden_size=5))
    net = module.reliability
    with torch.no_grad():
        net.output.weight.copy_(torch.tensor([[0.5, -0.3, 1.2]]))  # one negative entry, projected to 0
    loss, _ = module.training_loss(x, rows, annotators, labels)
    assert torch.equal(net.output.weight, torch.tensor([[0.5, 0.0, 1.2]]))

    X = x.double().numpy()
    logits = array(module.gt_model(x)[0])
    p = softmax(logits)
    W = array(module.confusion.weight)
    E = array(net.expertise)
    losses = []
    for i, m, z in pairs(rows, annotators, labels):
        q = softmax(p[i] @ W[m])
        hidden = sigmoid(array(net.difficulty_hidden.weight) @ X[i] + array(net.difficulty_hidden.bias))
        difficulty = sigmoid(array(net.difficulty.weight) @ hidden + array(net.difficulty.bias))
        gap = (sigmoid(E[m]) - difficulty) * p[i]
        r = sigmoid(np.array([0.5, 0.0, 1.2]) @ gap + array(net.output.bias)[0])
        target = r * np.eye(3)[z] + (1 - r) / 3
        annotation = -(target * np.log(q)).sum()
        agrees = float(logits[i].argmax() == z)
        reliability = -(agrees * math.log(r) + (1 - agrees) * math.log(1 - r))
        losses.append(0.9 * annotation + 0.1 * reliability)
    assert loss.item() == pytest.approx(np.mean(losses), rel=1e-5)


def test_crowd_ar_reliability_is_monotone_in_expertise():
    net = CrowdARModule(LinearGT(2, 3), 2, instance_dim=2, n_classes=3).reliability
    embedding = torch.randn(1, 2)
    proba = torch.tensor([[0.2, 0.5, 0.3]])
    with torch.no_grad():
        net.output.weight.copy_(torch.tensor([[-1.0, 2.0, 0.5]]))  # read clipped at 0
        net.expertise.copy_(torch.tensor([[-3.0, -3.0, -3.0], [3.0, 3.0, 3.0]]))
    low, high = (net(embedding, torch.tensor([m]), proba).item() for m in (0, 1))
    assert high > low


def test_conal_penalty_sign_follows_the_paper_code():
    module = CoNALModule(LinearGT(2, 3), 4, instance_dim=2, n_classes=3, reg_lambda=0.5)
    assert module.penalty(torch.zeros(1, 3), torch.tensor([0])).item() == 0  # all matrices at 2 I
    with torch.no_grad():
        module.individual.weight[1] += 1.0  # distance sqrt(9) = 3 from the common matrix
    assert module.penalty(torch.zeros(1, 3), torch.tensor([0])).item() == pytest.approx(-0.5 * 3)
    module.reg_lambda = 0
    assert module.penalty(torch.zeros(1, 3), torch.tensor([0])) == 0


def test_madl_weights_favour_annotators_unlike_the_others():
    module = MaDLModule(LinearGT(2, 3), 3, instance_dim=2, n_classes=3, embed_dim=2)
    with torch.no_grad():
        module.annotator_embedding.weight.copy_(torch.tensor([[0.0, 0.0], [0.0, 0.0], [50.0, 0.0]]))
    # two identical annotators share a weight of 1/2 each before normalisation, the far one 1
    torch.testing.assert_close(module.annotator_weights(), torch.tensor([0.75, 0.75, 1.5]))


def test_madl_without_a_bandwidth_prior_weighs_every_label_one(tiny_batch):
    x, rows, annotators, labels = tiny_batch
    module = MaDLModule(LinearGT(2, 3), 4, instance_dim=2, n_classes=3, bandwidth_prior=None)
    assert module.bandwidth is None
    torch.testing.assert_close(module.annotator_weights(), torch.ones(4))
    loss, logits = module.training_loss(x, rows, annotators, labels)
    log_proba = module.annotation_log_proba(logits[rows], x[rows], annotators)
    torch.testing.assert_close(loss, -log_proba.gather(1, labels[:, None]).mean())


def test_outer_product_is_the_quadratic_form_of_the_summed_embeddings():
    torch.manual_seed(0)
    layer = OuterProduct(3, 4)
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    expected = torch.einsum("pe,kef,pf->pk", a + b, layer.weight, a + b)
    torch.testing.assert_close(layer(a, b), expected)


def test_annotator_embedding_is_a_linear_layer_on_one_hot_vectors():
    table = AnnotatorEmbedding(4, 3)
    bound = 1 / math.sqrt(4)
    assert table.weight.abs().max() <= bound and table.bias.abs().max() <= bound
    one_hot = torch.eye(4)[[2, 0]]
    torch.testing.assert_close(table(torch.tensor([2, 0])), one_hot @ table.weight + table.bias)
    table.mark_labelled(torch.tensor([True, True, True, False]))
    torch.testing.assert_close(table(torch.tensor([3])), table.weight[[3]] + table.bias)  # training mode
    table.eval()
    torch.testing.assert_close(table(torch.tensor([3]))[0], table.weight[:3].mean(0) + table.bias)
    torch.testing.assert_close(table.table(), table.weight + table.bias)


# -- (b) initialisation -----------------------------------------------------------------------------------


def test_conal_matrices_start_at_twice_the_identity(crowd_data):
    X, _, Z, _ = crowd_data
    clf = CoNALClassifier(**{**SMALL, "max_epochs": 0}, random_state=0).fit(X, Z)
    module = clf.net_.module_
    twice = 2 * np.eye(3)
    np.testing.assert_array_equal(array(module.common), twice)
    np.testing.assert_array_equal(array(module.individual.weight), np.broadcast_to(twice, (6, 3, 3)))
    assert array(module.annotator_embedding.weight).std() > 0  # drawn, not constant
    # the implied confusion of a certain class is a row-softmax between softmax(2 I) rows
    expected = np.broadcast_to(softmax(twice), (6, 3, 3))
    np.testing.assert_allclose(clf.annotator_confusion_, expected, rtol=1e-5)


def test_madl_starts_at_the_eta_prior_and_the_bandwidth_mode(crowd_data):
    X, _, Z, _ = crowd_data
    clf = MaDLClassifier(**{**SMALL, "max_epochs": 0}, eta=0.7, random_state=0).fit(X, Z)
    module = clf.net_.module_
    torch.testing.assert_close(module.annotator_head.output.bias.detach(), eta_bias(3, 0.7))
    assert module.bandwidth.item() == pytest.approx((1.25 - 1) / 0.25)
    assert clf.annotator_weights_.shape == (6,)
    assert clf.annotator_weights_.mean() == pytest.approx(1)
    # the output weights are drawn (default initialisation), so the diagonal is near, not at, eta
    diagonal = clf.annotator_confusion_.diagonal(axis1=1, axis2=2)
    assert np.abs(diagonal - 0.7).max() < 0.25


def test_crowd_ar_starts_with_identity_matrices(crowd_data):
    X, _, Z, _ = crowd_data
    clf = CrowdARClassifier(**{**SMALL, "max_epochs": 0}, random_state=0).fit(X, Z)
    module = clf.net_.module_
    np.testing.assert_array_equal(array(module.confusion.weight), np.broadcast_to(np.eye(3), (6, 3, 3)))
    expertise = array(module.reliability.expertise)
    assert expertise.shape == (6, 3) and expertise.std() > 0


def test_crowd_ar_training_keeps_the_reliability_weights_non_negative(crowd_data):
    X, _, Z, _ = crowd_data
    clf = CrowdARClassifier(**SMALL, random_state=0).fit(X, Z)
    clf.net_.module_.reliability.project_()
    assert (clf.net_.module_.reliability.output.weight >= 0).all()


# -- (c) known annotator noise: better than majority vote --------------------------------------------------


@pytest.mark.parametrize(
    "name, hidden_sizes",
    # MaDL's instance-dependent confusion matrices need a GT model that is not tiny: with one hidden
    # layer of 32 units and dropout 0.5 they absorb too much of the signal on these 400 instances
    # (as annot-mix's do), so it gets the family's default GT model.
    [("conal", (32,)), ("crowd_ar", (32,)), ("madl", (256, 128))],
)
def test_beats_majority_vote_on_simulated_annotators(name, hidden_sizes, crowd_data):
    X, y, Z, _ = crowd_data
    settings = {"hidden_sizes": hidden_sizes, "max_epochs": 30}
    clf = ESTIMATORS[name](**settings, random_state=0).fit(X[:400], Z[:400])
    mlp = AggregateClassifier(**settings, random_state=0).fit(X[:400], Z[:400])
    majority = np.mean(mlp.predict(X[400:]) == y[400:])
    accuracy = clf.score(X[400:], y[400:])
    assert accuracy >= majority + 0.04, (accuracy, majority)


# -- the family's summaries, unlabelled annotators, warm start, validation ---------------------------------


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_summaries_are_normalised_and_unlabelled_annotators_average(name, crowd_data):
    X, _, Z, _ = crowd_data
    Z = np.hstack([Z, np.full((len(Z), 1), -1)])
    clf = ESTIMATORS[name](**SMALL, random_state=0).fit(X, Z)
    np.testing.assert_allclose(clf.annotator_confusion_.sum(-1), 1, rtol=1e-5)
    proba = clf.predict_annotator_proba(X[:7])
    assert proba.shape == (7, 7, 3)
    np.testing.assert_allclose(proba.sum(-1), 1, rtol=1e-5)
    assert clf.n_labels_per_annotator_[-1] == 0
    assert np.isfinite(clf.annotator_accuracy_).all()


def test_conal_unlabelled_annotator_reads_the_mean_matrix_and_embedding(crowd_data):
    X, _, Z, _ = crowd_data
    Z = np.hstack([Z, np.full((len(Z), 1), -1)])
    module = CoNALClassifier(**SMALL, random_state=0).fit(X, Z).net_.module_
    embedding = torch.randn(1, 32)
    with torch.no_grad():
        own = module.log_confusion(embedding, torch.tensor([6]))
        table = module.individual.weight[:6].mean(0)
        vector = module.annotator_embedding.weight[:6].mean(0) + module.annotator_embedding.bias
        u = nn.functional.normalize(module.instance_projection(embedding), dim=1)
        omega = torch.sigmoid(u[0] @ nn.functional.normalize(vector, dim=0))
        mixed = omega * module.common + (1 - omega) * table
    torch.testing.assert_close(own[0], mixed.log_softmax(-1))


@pytest.mark.parametrize(
    "cls, name, value",
    [(CoNALClassifier, "reg_lambda", 0.5), (CrowdARClassifier, "annotation_weight", 0.5)],
)
def test_warm_start_applies_the_current_loss_weight(cls, name, value, crowd_data):
    X, _, Z, _ = crowd_data
    clf = cls(**SMALL, random_state=0).fit(X, Z)
    clf.set_params(warm_start=True, **{name: value}).fit(X, Z)
    assert getattr(clf.net_.module_, name) == value


@pytest.mark.parametrize(
    "cls, params, message",
    [
        (CoNALClassifier, {"reg_lambda": -0.1}, "reg_lambda"),
        (CoNALClassifier, {"embed_dim": 0}, "embed_dim"),
        (MaDLClassifier, {"eta": 0.2}, r"eta=0.2 must lie in \(1/n_classes, 1\)"),
        (MaDLClassifier, {"eta": 1.0}, "eta"),
        (MaDLClassifier, {"hidden_size": 0}, "hidden_size"),
        (MaDLClassifier, {"bandwidth_prior": (1.25,)}, r"bandwidth_prior=\(1.25,\) must be \(shape, rate\)"),
        (MaDLClassifier, {"bandwidth_prior": (1.25, -1.0)}, "two positive numbers"),
        (MaDLClassifier, {"bandwidth_prior": "gamma"}, "bandwidth_prior"),
        (CrowdARClassifier, {"annotation_weight": 1.5}, "annotation_weight"),
        (CrowdARClassifier, {"reliability_hidden_size": 0}, "reliability_hidden_size"),
    ],
)
def test_bad_parameters_raise_value_errors(cls, params, message, crowd_data):
    X, _, Z, _ = crowd_data
    with pytest.raises(ValueError, match=message):
        cls(**{**SMALL, **params}).fit(X, Z)
