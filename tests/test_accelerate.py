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

from skannot import AcceleratedAnnotMixClassifier, AnnotMixClassifier
from skannot._accelerate import ShardedPairBatchIterator
from skannot._training import CrowdDataset
from skannot._validation import check_annotations

SMALL = {
    "max_epochs": 3,
    "hidden_sizes": (16,),
    "annotator_embed_dim": 4,
    "annotator_hidden_size": 4,
    "random_state": 0,
}


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


def test_sharded_batches_partition_every_batch_and_weight_pairs():
    Z = np.array([[0, 1, -1], [1, -1, -1], [0, 0, 0], [1, 1, -1], [0, -1, 1]] * 5)
    annotations, _, _ = check_annotations(Z)
    dataset = CrowdDataset(torch.arange(len(Z), dtype=torch.float32)[:, None], annotations)
    shards = [
        list(ShardedPairBatchIterator(dataset, batch_size=10, accelerator=fake_accelerator(rank, 3)))
        for rank in range(3)
    ]
    assert [len(s) for s in shards] == [3, 3, 3]
    for step in range(3):
        rows = torch.cat([shards[rank][step][0][:, 0] for rank in range(3)])
        torch.testing.assert_close(rows, torch.arange(10.0 * step, min(10.0 * step + 10, 25)))
        shares = [shards[rank][step][2] for rank in range(3)]
        assert sum(shares) == pytest.approx(3)
        assert shares == [
            3 * len(shards[rank][step][1][0]) / sum(len(s[step][1][0]) for s in shards) for rank in range(3)
        ]
    # shuffling drops a trailing batch too small to give every process two rows
    shuffled = ShardedPairBatchIterator(
        dataset, batch_size=10, shuffle=True, accelerator=fake_accelerator(0, 3)
    )
    assert len(shuffled) == 2 and len(list(shuffled)) == 2
    with pytest.raises(ValueError, match="batch_size >= 6"):
        ShardedPairBatchIterator(dataset, batch_size=5, accelerator=fake_accelerator(0, 3))


SCRIPT = """
import json, sys
import numpy as np, torch
from accelerate import Accelerator
from skannot import AcceleratedAnnotMixClassifier
torch.set_num_threads(1)
rng = np.random.default_rng(0)
y = rng.integers(0, 3, 400)
X = (rng.normal(size=(400, 4)) + 4 * np.eye(3, 4)[y]).astype(np.float32)
Z = np.where(rng.random((400, 3)) < 0.8, y[:, None], rng.integers(0, 3, (400, 3)))
accelerator = Accelerator(cpu=True)
clf = AcceleratedAnnotMixClassifier(
    accelerator=accelerator, max_epochs=15, hidden_sizes=(16,), annotator_embed_dim=4,
    annotator_hidden_size=4, dropout=0.0, random_state=0,
).fit(X, Z)
weights = torch.cat([v.double().flatten() for v in clf.net_.module_.state_dict().values()])
json.dump({
    "processes": accelerator.num_processes,
    "weights": weights.tolist(),
    "batches": len(clf.history_[-1, "batches"]),
    "accuracy": float((clf.predict(X) == y).mean()),
}, open(sys.argv[1] + f"/rank{accelerator.process_index}.json", "w"))
"""


def test_two_processes_train_one_model(tmp_path):
    """Data-parallel on 2 CPU processes (gloo): both end with the same weights and buffers."""
    script = tmp_path / "fit.py"
    script.write_text(textwrap.dedent(SCRIPT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*command, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [r["processes"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    # each step takes one batch of 64 in all, as in a single process: ceil(400 / 64) steps
    assert ranks[0]["batches"] == 7
    assert ranks[0]["accuracy"] > 0.8, ranks[0]["accuracy"]
