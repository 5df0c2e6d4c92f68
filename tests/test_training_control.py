"""Weights, GT-only weight decay and early stopping on held-out annotations, for every estimator."""

import numpy as np
import pytest
import sklearn
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight
from skorch.callbacks import Checkpoint, EarlyStopping

import skannot
from skannot import AnnotMixClassifier, TraceRegClassifier
from skannot._fast import FlatRAdam, ProbabilitySpaceLoss
from skannot._testing import ESTIMATORS, small, small_crowd
from skannot._training import held_out_rows
from skannot._validation import check_annotations
from skannot.classifiers._annot_mix import AnnotMixLoss
from skannot.classifiers._trace_reg import TraceRegModule

IDS = [cls.__name__ for cls in ESTIMATORS]


@pytest.fixture(scope="module")
def data():
    return small_crowd()


def _with_mixup(cls):
    """Settings that make the estimator train with mixup where it has it (the weights are then mixed)."""
    return {"alpha": 1.0} if "alpha" in cls().get_params() else {}


# -- sample_weight and class_weight ------------------------------------------------------


@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_all_one_weights_give_exactly_the_unweighted_fit(cls, data):
    X, _, Z = data
    settings = _with_mixup(cls)
    plain = small(cls, random_state=0, **settings).fit(X, Z)
    weighted = small(cls, random_state=0, **settings).fit(X, Z, sample_weight=np.ones(len(X)))
    np.testing.assert_array_equal(plain.predict_proba(X), weighted.predict_proba(X))
    # Weights only rescale: a constant weight is all-one weights after the rescaling to mean 1.
    constant = small(cls, random_state=0, **settings).fit(X, Z, sample_weight=np.full(len(X), 3.0))
    np.testing.assert_allclose(plain.predict_proba(X), constant.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_weights_change_the_fit(cls, data):
    X, y, Z = data
    plain = small(cls, random_state=0).fit(X, Z)
    weights = np.where(y == 2, 0.05, 1.0)
    weighted = small(cls, random_state=0).fit(X, Z, sample_weight=weights)
    # Down-weighting the instances of class 2 lowers the probability the model gives it.
    assert weighted.predict_proba(X)[:, 2].mean() < plain.predict_proba(X)[:, 2].mean()


@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_training_loss_is_affine_in_the_weights(cls, data):
    """Every method's loss is (weighted mean of per-pair losses) + penalty, whatever it overrides."""
    X, _, Z = data
    clf = small(cls, random_state=0).fit(X, Z)
    module = clf.net_.module_.eval()  # no dropout: the same forward pass each time
    annotations, _, _ = check_annotations(Z[:32], classes=clf.classes_)
    x = torch.from_numpy(X[:32])
    rows = torch.from_numpy(annotations.samples)
    annotators = torch.from_numpy(annotations.annotators)
    labels = torch.from_numpy(annotations.labels)
    generator = torch.Generator().manual_seed(0)
    first, second = torch.rand(len(rows), generator=generator), torch.rand(len(rows), generator=generator)

    def loss(weights):
        with torch.no_grad():
            return float(module.training_loss(x, rows, annotators, labels, weights=weights)[0])

    np.testing.assert_allclose(loss(torch.ones(len(rows))), loss(None), rtol=1e-6)
    combined = loss(0.3 * first + 0.7 * second)
    np.testing.assert_allclose(combined, 0.3 * loss(first) + 0.7 * loss(second), rtol=1e-5)


def test_net_mixes_the_pair_weights_with_lambda():
    from skannot._training import CrowdDataset, CrowdNet, PairBatchIterator

    X = torch.randn(6, 2)
    Z = np.array([[0, 1], [1, -1], [0, 0], [1, 1], [-1, 0], [1, 0]])
    annotations, _, _ = check_annotations(Z)
    weights = np.arange(1, annotations.n_labels + 1, dtype=float)
    dataset = CrowdDataset(X, annotations, weights)
    x, (rows, annotators, labels, batch_weights) = dataset.batch(torch.arange(6))
    np.testing.assert_allclose(batch_weights.numpy(), weights / weights.mean(), rtol=1e-6)

    class Recorder(torch.nn.Module):
        supports_mixup = True

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.scale

        def training_loss(self, x, rows, annotators, labels, lam=None, partner=None, weights=None):
            self.seen = (lam, partner, weights)
            return (self.scale * weights).sum(), x

    net = CrowdNet(
        module=Recorder(), alpha=0.5, batch_size=6, iterator_train=PairBatchIterator, train_split=None
    ).initialize()
    net.train_step_single((x, (rows, annotators, labels, batch_weights)))
    lam, partner, passed = net.module_.seen
    expected = lam * batch_weights + (1 - lam) * batch_weights[partner]
    torch.testing.assert_close(passed, expected)


def test_probability_space_fast_path_honours_weights():
    generator = torch.Generator().manual_seed(0)
    n_pairs, n_classes = 40, 4
    class_logits = torch.randn(n_pairs, n_classes, generator=generator, requires_grad=True)
    confusion_logits = torch.randn(n_pairs, n_classes, n_classes, generator=generator, requires_grad=True)
    labels = torch.randint(0, n_classes, (n_pairs,), generator=generator)
    partner_labels = torch.randint(0, n_classes, (n_pairs,), generator=generator)
    lam = torch.rand(n_pairs, generator=generator)
    weights = torch.rand(n_pairs, generator=generator) * 2
    fast, accurate = ProbabilitySpaceLoss.apply(
        class_logits, confusion_logits, labels, partner_labels, lam, 1 / n_pairs, weights
    )
    assert bool(accurate)
    fast_grads = torch.autograd.grad(fast, (class_logits, confusion_logits))
    plain = AnnotMixLoss.log_space(
        class_logits, confusion_logits, labels, partner_labels, lam, weights=weights
    )
    plain_grads = torch.autograd.grad(plain, (class_logits, confusion_logits))
    torch.testing.assert_close(fast, plain)
    for a, b in zip(fast_grads, plain_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_weighted_fits_agree_with_and_without_the_probability_space_loss(data, alpha):
    X, y, Z = data
    weights = np.where(y == 1, 0.2, 1.0)
    with skannot.config_context(fast_paths={"probability_loss"}):
        fast = small(AnnotMixClassifier, random_state=0, alpha=alpha).fit(X, Z, sample_weight=weights)
    with skannot.config_context(fast_paths=set()):
        plain = small(AnnotMixClassifier, random_state=0, alpha=alpha).fit(X, Z, sample_weight=weights)
    np.testing.assert_allclose(fast.predict_proba(X), plain.predict_proba(X), atol=1e-4)


def test_class_weight_on_one_annotator_equals_the_matching_sample_weight(data):
    """With a 1-D y every instance has one label, so weighting its class is weighting the instance."""
    X, y, _ = data
    noisy = np.where(np.random.default_rng(0).random(len(y)) < 0.2, (y + 1) % 3, y)
    by_class = {0: 2.0, 2: 0.5}
    weights = np.array([by_class.get(label, 1.0) for label in noisy])
    a = small(TraceRegClassifier, random_state=0, class_weight=by_class).fit(X, noisy)
    b = small(TraceRegClassifier, random_state=0).fit(X, noisy, sample_weight=weights)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-6)
    balanced = compute_class_weight("balanced", classes=np.arange(3), y=noisy)
    c = small(TraceRegClassifier, random_state=0, class_weight="balanced").fit(X, noisy)
    d = small(TraceRegClassifier, random_state=0).fit(X, noisy, sample_weight=balanced[noisy])
    np.testing.assert_allclose(c.predict_proba(X), d.predict_proba(X), atol=1e-6)


def test_balanced_class_weight_shares_tied_votes():
    clf = TraceRegClassifier(class_weight="balanced")
    annotations, classes, _ = check_annotations(np.array([[0, 1], [0, 0], [1, 1], [0, -1]]))
    # Votes: 0, 0, 1, 0 and a tie 0/1 in the first row: n_0 = 2.5, n_1 = 1.5 of n = 4.
    np.testing.assert_allclose(clf._class_weights(annotations, classes), [4 / (2 * 2.5), 4 / (2 * 1.5)])


@pytest.mark.parametrize(
    ("kwargs", "weights", "match"),
    [
        ({"class_weight": {7: 1.0}}, None, "class_weight names the class 7"),
        ({"class_weight": {0: -1.0}}, None, "must be a finite number >= 0"),
        ({}, -np.ones(150), "finite, non-negative numbers; a weight of 0 leaves"),
        ({}, np.ones(149), "shape \\(149,\\) but Z has 150 rows; pass one weight per sample"),
        ({}, np.zeros(150), "zero weight"),
    ],
)
def test_invalid_weights_are_refused_with_advice(data, kwargs, weights, match):
    X, _, Z = data
    with pytest.raises(ValueError, match=match):
        small(TraceRegClassifier, **kwargs).fit(X, Z, sample_weight=weights)


def test_a_module_without_weights_is_refused_only_when_weights_are_given(data):
    X, _, Z = data

    class OldModule(TraceRegModule):
        def training_loss(self, x, rows, annotators, labels, lam=None, partner=None):
            return super().training_loss(x, rows, annotators, labels)

    class OldStyle(TraceRegClassifier):
        def _build_crowd_module(self, gt_model, n_features, instance_dim, n_classes, n_annotators):
            return OldModule(gt_model, n_annotators=n_annotators, n_classes=n_classes)

    small(OldStyle, random_state=0).fit(X, Z)
    with pytest.raises(ValueError, match="training_loss without a weights argument"):
        small(OldStyle, random_state=0).fit(X, Z, sample_weight=np.ones(len(X)))


def test_sample_weight_reaches_the_estimator_through_pipelines_and_searches(data):
    X, y, Z = data
    weights = np.where(y == 2, 0.1, 1.0)
    direct = small(AnnotMixClassifier, random_state=0).fit(X, Z, sample_weight=weights)
    pipe = make_pipeline(
        StandardScaler(with_mean=False, with_std=False), small(AnnotMixClassifier, random_state=0)
    )
    pipe.fit(X, Z, annotmixclassifier__sample_weight=weights)
    np.testing.assert_array_equal(pipe.predict_proba(X), direct.predict_proba(X))
    with sklearn.config_context(enable_metadata_routing=True):
        routed = make_pipeline(
            StandardScaler(with_mean=False, with_std=False).set_fit_request(sample_weight=False),
            small(AnnotMixClassifier, random_state=0)
            .set_fit_request(sample_weight=True)
            .set_score_request(sample_weight=True),
        )
        routed.fit(X, Z, sample_weight=weights)
        np.testing.assert_array_equal(routed.predict_proba(X), direct.predict_proba(X))
        search = GridSearchCV(routed, {"annotmixclassifier__alpha": [0.0, 1.0]}, cv=2)
        search.fit(X, Z, sample_weight=weights)
        assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    search = GridSearchCV(small(AnnotMixClassifier, random_state=0), {"alpha": [0.0, 1.0]}, cv=2)
    search.fit(X, Z, sample_weight=weights)
    np.testing.assert_allclose(
        search.best_estimator_.predict_proba(X),
        small(AnnotMixClassifier, random_state=0, alpha=search.best_params_["alpha"])
        .fit(X, Z, sample_weight=weights)
        .predict_proba(X),
    )


# -- GT-only weight decay ------------------------------------------------------------------


@pytest.mark.parametrize("fast_paths", [True, False])
@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_gt_weight_decay_applies_to_the_gt_model_only(cls, data, fast_paths):
    X, _, Z = data
    with skannot.config_context(fast_paths=fast_paths):
        clf = small(cls, random_state=0, max_epochs=1, gt_weight_decay=1e-4).fit(X, Z)
    module = clf.net_.module_
    gt = {id(p) for p in module.gt_model.parameters()}
    optimizer = clf.net_.optimizer_
    assert isinstance(optimizer, FlatRAdam) == fast_paths
    # FlatRAdam holds one flat buffer per group; its members are the module's parameters.
    members = optimizer._members if fast_paths else [group["params"] for group in optimizer.param_groups]
    decays = {
        id(p): group["weight_decay"] for group, params in zip(optimizer.param_groups, members) for p in params
    }
    assert {decays[i] for i in gt} == {1e-4}
    others = [id(p) for p in module.parameters() if id(p) not in gt and p.requires_grad]
    assert {decays[i] for i in others if i in decays} <= {0}


# -- early stopping -------------------------------------------------------------------------


def test_held_out_rows_are_stratified_by_majority_vote():
    rng = np.random.default_rng(0)
    Z = rng.integers(0, 4, size=(203, 3))
    annotations, _, _ = check_annotations(Z)
    held_out = held_out_rows(annotations, 4, 0.2, seed=1)
    assert len(held_out) == round(0.2 * 203) and len(set(held_out)) == len(held_out)
    group = annotations.votes(4).argmax(1)
    for c in range(4):
        assert abs((group[held_out] == c).sum() - 0.2 * (group == c).sum()) <= 1
    np.testing.assert_array_equal(held_out, held_out_rows(annotations, 4, 0.2, seed=1))
    with pytest.raises(ValueError, match="early_stopping needs at least 1"):
        held_out_rows(annotations.subset(np.arange(3)), 4, 0.1, seed=0)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=IDS)
def test_early_stopping_records_the_held_out_scores_and_keeps_the_best_epoch(cls, data):
    X, _, Z = data
    settings = {"random_state": 0, "lr_scheduler": None, "lr": 0.05, "early_stopping": True}
    stopped = small(cls, max_epochs=40, n_iter_no_change=2, **settings).fit(X, Z)
    history = stopped.history_
    losses = np.array(history[:, "valid_loss"])
    assert len(history) < 40
    assert stopped.best_epoch_ == int(np.argmin(losses)) + 1
    assert len(history) == stopped.best_epoch_ + 2
    assert all(0 <= a <= 1 for a in history[:, "valid_acc"])
    # The kept weights are those of the best epoch: a fit of exactly that many epochs on the same
    # split, which never stops, ends with them.
    full = small(cls, max_epochs=stopped.best_epoch_, n_iter_no_change=1000, **settings).fit(X, Z)
    np.testing.assert_array_equal(stopped.predict_proba(X), full.predict_proba(X))
    # The held-out instances neither train nor enter the annotator summaries.
    plain = small(cls, random_state=0).fit(X, Z)
    assert stopped.n_labels_per_annotator_.sum() < plain.n_labels_per_annotator_.sum()


def test_skorch_early_stopping_and_checkpoint_monitor_valid_loss(data, tmp_path):
    X, _, Z = data
    clf = small(
        AnnotMixClassifier,
        random_state=0,
        max_epochs=40,
        lr=0.05,
        lr_scheduler=None,
        early_stopping=True,
        n_iter_no_change=1000,
        callbacks=[
            ("checkpoint", Checkpoint(monitor="valid_loss_best", dirname=str(tmp_path))),
            ("stop", EarlyStopping(monitor="valid_loss", patience=2, threshold=0)),
        ],
    ).fit(X, Z)
    losses = np.array(clf.history_[:, "valid_loss"])
    assert len(losses) < 40
    assert losses[-3:].min() >= losses.min()
    checkpoints = clf.history_[:, "event_cp"]
    np.testing.assert_array_equal(checkpoints, clf.history_[:, "valid_loss_best"])
    assert (tmp_path / "params.pt").exists()
    # The callbacks' parameters are reachable as usual.
    clf.set_params(callbacks__stop__patience=1).fit(X, Z)
    assert len(clf.history_) <= len(losses)


def test_early_stopping_off_records_no_held_out_scores(data):
    X, _, Z = data
    clf = small(TraceRegClassifier, random_state=0).fit(X, Z)
    assert "valid_loss" not in clf.history_[-1]
    assert not hasattr(clf, "best_epoch_")


def test_an_annotator_labelling_only_held_out_instances_is_modelled_as_the_average_one(data):
    X, _, Z = data
    Z = np.hstack([Z, np.full((len(Z), 1), -1)])
    Z[7, -1] = Z[7, 0] if Z[7, 0] >= 0 else 0  # the new annotator's only label
    annotations, _, _ = check_annotations(Z)
    for random_state in range(100):
        seed = small(AnnotMixClassifier, random_state=random_state)._fit_seed()
        if 7 in held_out_rows(annotations, 3, 0.1, seed):
            break
    clf = small(AnnotMixClassifier, random_state=random_state, early_stopping=True).fit(X, Z)
    assert clf.n_labels_per_annotator_[-1] == 0
    assert not bool(clf.net_.module_.labelled[-1]) and bool(clf.net_.module_.labelled[:-1].all())
