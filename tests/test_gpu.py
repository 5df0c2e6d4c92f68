"""The CUDA path: fits, the loss, dropout masks, the annotator head and the options on a GPU.

Skipped without a GPU. ``SKANNOT_TEST_DEVICE=cpu python -m pytest tests/test_gpu.py``
runs the device-independent checks on the CPU, which checks the tests
themselves; ``tools/gpu_check.sh`` runs them on a GPU machine together with
the CUDA speed benchmark.
"""

import os

import numpy as np
import pytest
import torch

from skannot import AnnotMixClassifier, CrowdLayerClassifier
from skannot._accelerate import ShardedDropout, row_shard
from skannot._fast import RowSparseAdam, keep_mask
from skannot._nn import MLP
from skannot._testing import ESTIMATORS
from skannot.classifiers._annot_mix import AnnotMixLoss, AnnotMixModule

DEVICE = os.environ.get("SKANNOT_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else None)
pytestmark = pytest.mark.skipif(DEVICE is None, reason="needs a GPU (or SKANNOT_TEST_DEVICE=cpu)")
cuda_only = pytest.mark.skipif(DEVICE != "cuda", reason="an option that only CUDA has")

# The default network: on the CPU it reaches 0.94-0.96 test accuracy on this split for seeds 0-2.
SETTINGS = {"max_epochs": 30, "random_state": 0}


@pytest.fixture(scope="module")
def split(crowd_data):
    X, y, Z, _ = crowd_data
    return X[:400], Z[:400], X[400:], y[400:]


def _accuracy(clf, X, y):
    return float((clf.predict(X) == y).mean())


@pytest.fixture(scope="module")
def cpu_fit(split):
    X, Z, _, _ = split
    return AnnotMixClassifier(**SETTINGS, device="cpu").fit(X, Z)


def test_fit_on_the_device_learns_as_on_the_cpu(split, cpu_fit):
    X, Z, X_test, y_test = split
    clf = AnnotMixClassifier(**SETTINGS, device=DEVICE).fit(X, Z)
    assert all(p.device.type == DEVICE for p in clf.net_.module_.parameters())
    assert np.isfinite(clf.history_[:, "train_loss"]).all()
    # dropout and floating-point order differ between devices: compare what was learned
    accuracy = _accuracy(clf, X_test, y_test)
    assert accuracy > 0.9
    assert abs(accuracy - _accuracy(cpu_fit, X_test, y_test)) < 0.04
    proba = clf.predict_proba(X_test)
    assert isinstance(proba, np.ndarray) and proba.shape == (len(X_test), 3)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(clf.annotator_accuracy_, cpu_fit.annotator_accuracy_, atol=0.08)


def test_loss_on_the_device_equals_the_cpu_loss():
    """On CUDA the loss runs in log space; on the CPU in probability space: same value and gradients."""
    generator = torch.Generator().manual_seed(0)
    class_logits = torch.randn(300, 10, generator=generator)
    confusion_logits = 3 * torch.randn(300, 10, 10, generator=generator)
    labels, partner_labels = torch.randint(0, 10, (2, 300), generator=generator)
    lam = torch.rand(300, generator=generator)
    results = []
    for device in ("cpu", DEVICE):
        inputs = [t.to(device).requires_grad_() for t in (class_logits, confusion_logits)]
        loss = AnnotMixLoss()(*inputs, labels.to(device), partner_labels.to(device), lam.to(device))
        results.append([loss, *torch.autograd.grad(loss, inputs)])
    for on_cpu, on_device in zip(*results):
        torch.testing.assert_close(on_device.cpu(), on_cpu, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_keep_mask_and_sharded_dropout_on_the_device(p):
    torch.manual_seed(0)
    mask = keep_mask((512, 256), p, DEVICE)
    assert mask.device.type == DEVICE and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert abs(mask.mean().item() - (1 - p)) < 4 * (p * (1 - p) / mask.numel()) ** 0.5
    # a slice of a batch draws the whole batch's mask and keeps its rows
    layer = ShardedDropout(p).train()
    torch.manual_seed(1)
    whole = keep_mask((10, 6), p, DEVICE, scale=1 / (1 - p))
    torch.manual_seed(1)
    with row_shard(layer, 3, 10):
        part = layer(torch.ones(4, 6, device=DEVICE))
    torch.testing.assert_close(part, whole[3:7])


def test_annotator_head_paths_agree_on_the_device():
    torch.manual_seed(0)
    module = AnnotMixModule(MLP(6, 3, (8,)), n_annotators=5, instance_dim=8, n_classes=3).to(DEVICE)
    with torch.no_grad():
        module.annotator_head.output.weight.normal_()
    embedding = torch.randn(40, 8, device=DEVICE)
    annotators = torch.randint(0, 5, (40,), device=DEVICE)
    lam, partner = torch.rand(40, device=DEVICE), torch.randperm(40, device=DEVICE)
    projected = module.pair_confusion_logits(embedding, annotators, lam, partner, project_table=True)
    plain = module.pair_confusion_logits(embedding, annotators, lam, partner, project_table=False)
    torch.testing.assert_close(projected, plain, rtol=1e-5, atol=1e-5)


def test_sparse_annotator_updates_on_the_device(split, cpu_fit):
    X, Z, X_test, y_test = split
    clf = AnnotMixClassifier(**SETTINGS, sparse_annotator_updates=True, device=DEVICE).fit(X, Z)
    optimizer = clf.net_.annotator_optimizer_
    assert type(optimizer) is RowSparseAdam
    state = optimizer.state[clf.net_.module_.annotator_embedding.weight]
    assert state["exp_avg"].device.type == DEVICE
    assert _accuracy(clf, X_test, y_test) > 0.9


@cuda_only
def test_mixed_precision_fit(split, cpu_fit):
    X, Z, X_test, y_test = split
    clf = AnnotMixClassifier(**SETTINGS, mixed_precision=True, device=DEVICE).fit(X, Z)
    assert np.isfinite(clf.history_[:, "train_loss"]).all()
    assert abs(_accuracy(clf, X_test, y_test) - _accuracy(cpu_fit, X_test, y_test)) < 0.04


@cuda_only
def test_compiled_step_fit(split):
    X, Z, X_test, y_test = split
    clf = AnnotMixClassifier(**{**SETTINGS, "max_epochs": 3}, compile=True, device=DEVICE).fit(X, Z)
    assert "_compiled_loss" in clf.net_.__dict__
    assert np.isfinite(clf.history_[:, "train_loss"]).all()
    assert clf.predict_proba(X_test).shape == (len(X_test), 3)


def test_accelerated_fit_on_one_device(split, cpu_fit):
    accelerate = pytest.importorskip("accelerate")
    from skannot import AcceleratedAnnotMixClassifier

    X, Z, X_test, y_test = split
    accelerator = accelerate.Accelerator(cpu=DEVICE == "cpu")
    clf = AcceleratedAnnotMixClassifier(**SETTINGS, accelerator=accelerator).fit(X, Z)
    assert clf.device_.type == DEVICE
    assert abs(_accuracy(clf, X_test, y_test) - _accuracy(cpu_fit, X_test, y_test)) < 0.04


# -- the whole family on the device ------------------------------------------------------


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_estimator_fits_and_predicts_on_the_device(split, estimator):
    """Each method's module, loss and summaries run on the device and learn what they learn on the CPU."""
    X, Z, X_test, y_test = split
    settings = {"max_epochs": 10, "random_state": 0}
    cpu = estimator(**settings, device="cpu").fit(X, Z)
    clf = estimator(**settings, device=DEVICE).fit(X, Z)
    assert all(p.device.type == DEVICE for p in clf.net_.module_.parameters())
    assert np.isfinite(clf.history_[:, "train_loss"]).all()
    assert abs(_accuracy(clf, X_test, y_test) - _accuracy(cpu, X_test, y_test)) < 0.08
    n_annotators = Z.shape[1]
    proba = clf.predict_annotator_proba(X_test[:5])
    assert isinstance(proba, np.ndarray) and proba.shape == (5, n_annotators, 3)
    assert clf.annotator_confusion_.shape == (n_annotators, 3, 3)
    consensus = clf.predict_consensus_proba(X, Z)
    np.testing.assert_allclose(consensus.sum(1), 1, rtol=1e-5)
    quality = clf.label_quality(X, Z)["quality"].to_numpy()
    assert np.isfinite(quality).all() and ((0 <= quality) & (quality <= 1)).all()


@pytest.mark.parametrize("estimator", [AnnotMixClassifier, CrowdLayerClassifier])
def test_weights_and_early_stopping_on_the_device(split, estimator):
    X, Z, X_test, y_test = split
    weights = np.random.default_rng(0).uniform(0.5, 1.5, len(X))
    settings = {"max_epochs": 10, "random_state": 0, "early_stopping": True, "n_iter_no_change": 3}
    clf = estimator(**settings, device=DEVICE, class_weight="balanced").fit(X, Z, sample_weight=weights)
    assert np.isfinite(clf.history_[:, "valid_loss"]).all()
    assert 1 <= clf.best_epoch_ <= len(clf.history_)
    assert _accuracy(clf, X_test, y_test) > 0.6


def test_annotator_features_on_the_device(split):
    """Annotators described by features train on the device and predict new annotators there."""
    X, Z, X_test, _ = split
    features = np.random.default_rng(0).normal(size=(Z.shape[1], 3))
    settings = {"max_epochs": 10, "random_state": 0, "annotator_features": features}
    clf = AnnotMixClassifier(**settings, annotator_representation="features", device=DEVICE).fit(X, Z)
    new = np.random.default_rng(1).normal(size=(2, 3))
    proba = clf.predict_annotator_proba(X_test[:4], annotator_features=new)
    assert proba.shape == (4, 2, 3)
    np.testing.assert_allclose(proba.sum(-1), 1, rtol=1e-5)
