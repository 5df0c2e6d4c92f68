import copy
import json
import pickle
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from sklearn.base import clone
from torch import nn

from skannot import AcceleratedAnnotMixClassifier, AnnotMixClassifier
from skannot._accelerate import SharedOrderPairBatchIterator, SyncBatchNorm1d, _slice_bounds
from skannot._testing import small_settings
from skannot._training import CrowdDataset, PairBatchIterator
from skannot._validation import check_annotations

SMALL = small_settings(AnnotMixClassifier, max_epochs=3, random_state=0)


@pytest.fixture(scope="module")
def data(crowd_data):
    X, _, Z, _ = crowd_data
    return X[:300], Z[:300]


@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_single_process_fit_equals_the_plain_estimator(data, alpha):
    X, Z = data
    params = {**SMALL, "alpha": alpha, "batch_size": 33}
    plain = AnnotMixClassifier(**params).fit(X, Z)
    accelerated = AcceleratedAnnotMixClassifier(accelerator=Accelerator(cpu=True), **params).fit(X, Z)
    np.testing.assert_array_equal(plain.history_[:, "train_loss"], accelerated.history_[:, "train_loss"])
    np.testing.assert_array_equal(plain.predict_proba(X), accelerated.predict_proba(X))
    np.testing.assert_array_equal(plain.annotator_confusion_, accelerated.annotator_confusion_)
    assert accelerated.device_ == torch.device("cpu")


def test_default_accelerator_warm_start_and_pickling(data):
    X, Z = data
    plain = AnnotMixClassifier(**SMALL, warm_start=True).fit(X, Z).fit(X, Z)
    clf = AcceleratedAnnotMixClassifier(**SMALL, warm_start=True).fit(X, Z).fit(X, Z)
    assert isinstance(clf.accelerator_, Accelerator)
    np.testing.assert_array_equal(plain.predict_proba(X), clf.predict_proba(X))
    restored = pickle.loads(pickle.dumps(clf))
    assert restored.net_.device == "cpu"
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_parameters_clone_and_device_rule(data):
    X, Z = data
    accelerator = Accelerator(cpu=True)
    clf = AcceleratedAnnotMixClassifier(accelerator=accelerator, alpha=0.5, optimizer__weight_decay=1e-4)
    params = clf.get_params()
    assert params["accelerator"] is accelerator and params["alpha"] == 0.5 and params["device"] is None
    assert params["optimizer__weight_decay"] == 1e-4
    copy = clone(clf)
    assert copy.get_params()["accelerator"] is accelerator and copy.alpha == 0.5
    with pytest.raises(ValueError, match="leave device=None"):
        AcceleratedAnnotMixClassifier(device="cpu", **SMALL).fit(X, Z)
    with pytest.raises(ValueError, match="mixed_precision=True; pass Accelerator"):
        AcceleratedAnnotMixClassifier(mixed_precision=True, **SMALL).fit(X, Z)
    with pytest.raises(ValueError, match="sparse_annotator_updates=True"):
        AcceleratedAnnotMixClassifier(sparse_annotator_updates=True, **SMALL).fit(X, Z)


def fake_accelerator(rank, n_processes):
    return SimpleNamespace(num_processes=n_processes, process_index=rank, device=torch.device("cpu"))


def test_every_process_iterates_over_the_single_process_batches():
    Z = np.array([[0, 1, -1], [1, -1, -1], [0, 0, 0], [1, 1, -1], [0, -1, 1]] * 5)
    annotations, _, _ = check_annotations(Z)
    dataset = CrowdDataset(torch.arange(len(Z), dtype=torch.float32)[:, None], annotations)
    for shuffle in (False, True):
        torch.manual_seed(0)
        plain = list(PairBatchIterator(dataset, batch_size=8, shuffle=shuffle))
        torch.manual_seed(0)
        shared = list(
            SharedOrderPairBatchIterator(
                dataset, batch_size=8, shuffle=shuffle, accelerator=fake_accelerator(1, 3)
            )
        )
        # 25 rows in batches of 8: shuffling drops the trailing batch of one, as in one process
        assert len(shared) == len(plain) == (3 if shuffle else 4)
        for (x, pairs), (x_plain, pairs_plain) in zip(shared, plain):
            assert torch.equal(x, x_plain) and all(torch.equal(a, b) for a, b in zip(pairs, pairs_plain))


def test_slices_cover_the_batch_once():
    for n, parts in [(10, 3), (2, 4), (263, 8), (0, 2)]:
        bounds = [_slice_bounds(n, parts, k) for k in range(parts)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        sizes = [hi - lo for lo, hi in bounds]
        assert max(sizes) - min(sizes) <= 1


def test_sync_batch_norm_is_plain_batch_norm_in_one_process():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.BatchNorm1d(5, momentum=None))
    twin = copy.deepcopy(model)
    assert SyncBatchNorm1d.convert(model) is model
    assert [type(m) for m in model] == [nn.Linear, SyncBatchNorm1d, nn.ReLU, SyncBatchNorm1d]
    x = torch.randn(9, 3)
    torch.testing.assert_close(model(x), twin(x))
    torch.testing.assert_close(model.state_dict(), twin.state_dict())
    assert pickle.loads(pickle.dumps(model))[1].__class__ is SyncBatchNorm1d


SCRIPT = """
import json, sys
import numpy as np, torch
from accelerate import Accelerator
from skannot import AcceleratedAnnotMixClassifier
torch.set_num_threads(1)
rng = np.random.default_rng(0)
y = rng.integers(0, 3, 301)
X = (rng.normal(size=(301, 4)) + 4 * np.eye(3, 4)[y]).astype(np.float32)
Z = np.where(rng.random((301, 3)) < 0.8, y[:, None], rng.integers(0, 3, (301, 3)))
Z[rng.random(Z.shape) < 0.3] = -1
params = json.loads(sys.argv[2])
fit_params = {"sample_weight": np.array(params.pop("sample_weight"))} if "sample_weight" in params else {}
accelerator = Accelerator(cpu=True)
clf = AcceleratedAnnotMixClassifier(accelerator=accelerator, **params).fit(X, Z, **fit_params)
weights = {k: v.double().flatten().tolist() for k, v in clf.net_.module_.state_dict().items()}
json.dump({
    "processes": accelerator.num_processes,
    "weights": weights,
    "proba": clf.predict_proba(X).tolist(),
    "confusion": clf.annotator_confusion_.tolist(),
    "losses": clf.history_[:, "train_loss"],
    "batches": len(clf.history_[-1, "batches"]),
    "accuracy": float((clf.predict(X) == y).mean()),
    "valid_losses": clf.history_[:, "valid_loss"] if params.get("early_stopping") else None,
    "best_epoch": getattr(clf, "best_epoch_", None),
}, open(sys.argv[1] + f"/rank{accelerator.process_index}.json", "w"))
"""

MULTI = {
    "max_epochs": 4,
    "hidden_sizes": [16, 8],
    "annotator_embed_dim": 4,
    "annotator_hidden_size": 4,
    "batch_size": 32,
}


def _launch(tmp_path, n_processes, params):
    script = tmp_path / "fit.py"
    script.write_text(textwrap.dedent(SCRIPT))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(n_processes),
    ]
    done = subprocess.run(
        [*command, str(script), str(tmp_path), json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(n_processes)]


def _multi_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 301)
    X = (rng.normal(size=(301, 4)) + 4 * np.eye(3, 4)[y]).astype(np.float32)
    Z = np.where(rng.random((301, 3)) < 0.8, y[:, None], rng.integers(0, 3, (301, 3)))
    Z[rng.random(Z.shape) < 0.3] = -1
    return X, y, Z


X_MULTI, Y_MULTI, Z_MULTI = _multi_data()


def _single_process_reference(params):
    X, Z = X_MULTI, Z_MULTI
    params = {**params, "hidden_sizes": tuple(params["hidden_sizes"])}
    fit_params = {"sample_weight": np.array(params.pop("sample_weight"))} if "sample_weight" in params else {}
    clf = AnnotMixClassifier(**params).fit(X, Z, **fit_params)
    weights = {k: v.double().flatten().numpy() for k, v in clf.net_.module_.state_dict().items()}
    return clf, weights


# A bias right before batch norm has no effect on any output and a zero gradient up to
# rounding noise, which RAdam's normalisation (grad / sqrt(grad^2)) turns into steps of size lr:
# these biases, and the running means that include them, are where floating-point order shows.
NOISE_ONLY = {
    "gt_model.body.0.bias",
    "gt_model.body.1.running_mean",
    "gt_model.body.4.bias",
    "gt_model.body.5.running_mean",
}


@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_two_processes_train_the_single_process_model(tmp_path, alpha):
    """Data-parallel on 2 CPU processes (gloo) with batch norm, dropout and mixup: the same
    model as one plain process with the same seed, up to floating-point order."""
    params = {**MULTI, "alpha": alpha, "random_state": 3}
    ranks = _launch(tmp_path, 2, params)
    assert [r["processes"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["losses"] == ranks[1]["losses"]
    single, weights = _single_process_reference(params)
    # ceil(301 / 32) steps per epoch: each takes one batch of 32 instances in all
    assert ranks[0]["batches"] == len(single.history_[-1, "batches"]) == 10
    np.testing.assert_allclose(ranks[0]["losses"], single.history_[:, "train_loss"], rtol=1e-5)
    np.testing.assert_allclose(ranks[0]["proba"], single.predict_proba(X_MULTI), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(ranks[0]["confusion"], single.annotator_confusion_, rtol=1e-3, atol=1e-5)
    for name, values in weights.items():
        if name in NOISE_ONLY:
            continue
        np.testing.assert_allclose(ranks[0]["weights"][name], values, rtol=1e-3, atol=1e-4, err_msg=name)
    assert ranks[0]["accuracy"] == pytest.approx(float((single.predict(X_MULTI) == Y_MULTI).mean()))


def test_two_processes_train_with_weights_and_early_stopping_as_one_process(tmp_path):
    """Sample and class weights shard with their pairs, and the held-out validation runs on
    every process: the same losses, validation curve and best epoch as one plain process."""
    weights = np.random.default_rng(1).uniform(0, 2, len(X_MULTI)).round(3).tolist()
    params = {
        **MULTI,
        "random_state": 3,
        "max_epochs": 6,
        "class_weight": "balanced",
        "sample_weight": weights,
        "early_stopping": True,
        "n_iter_no_change": 2,
    }
    ranks = _launch(tmp_path, 2, params)
    assert ranks[0]["weights"] == ranks[1]["weights"]
    single, _ = _single_process_reference(params)
    np.testing.assert_allclose(ranks[0]["losses"], single.history_[:, "train_loss"], rtol=1e-5)
    np.testing.assert_allclose(ranks[0]["valid_losses"], single.history_[:, "valid_loss"], rtol=1e-4)
    assert ranks[0]["best_epoch"] == ranks[1]["best_epoch"] == single.best_epoch_
    np.testing.assert_allclose(ranks[0]["proba"], single.predict_proba(X_MULTI), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    ("params", "fit_params"),
    [
        ({}, {"sample_weight": np.linspace(0, 2, 300)}),
        ({"class_weight": "balanced"}, {}),
        ({"early_stopping": True, "max_epochs": 6, "n_iter_no_change": 2}, {}),
    ],
)
def test_single_process_weights_and_early_stopping_equal_the_plain_estimator(data, params, fit_params):
    X, Z = data
    params = {**SMALL, "batch_size": 33, **params}
    plain = AnnotMixClassifier(**params).fit(X, Z, **fit_params)
    accelerated = AcceleratedAnnotMixClassifier(accelerator=Accelerator(cpu=True), **params).fit(
        X, Z, **fit_params
    )
    np.testing.assert_array_equal(plain.history_[:, "train_loss"], accelerated.history_[:, "train_loss"])
    np.testing.assert_array_equal(plain.predict_proba(X), accelerated.predict_proba(X))
    if params.get("early_stopping"):
        np.testing.assert_array_equal(plain.history_[:, "valid_loss"], accelerated.history_[:, "valid_loss"])
        assert accelerated.best_epoch_ == plain.best_epoch_


def test_two_processes_share_one_seed_without_random_state(tmp_path):
    ranks = _launch(tmp_path, 2, {**MULTI, "max_epochs": 2})
    assert ranks[0]["weights"] == ranks[1]["weights"]
