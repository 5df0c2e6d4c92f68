"""Saving and loading fitted models with pickle and joblib, including GPU-trained ones."""

import io
import pickle
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.exceptions import DeviceWarning

from skannot import AnnotMixClassifier
from skannot._testing import small_settings

FAST = small_settings(AnnotMixClassifier)


@pytest.fixture(scope="module")
def small(crowd_data):
    X, _, Z, _ = crowd_data
    return X[:200], Z[:200]


def assert_same_model(restored, original, X):
    np.testing.assert_array_equal(restored.predict(X), original.predict(X))
    np.testing.assert_array_equal(restored.predict_proba(X), original.predict_proba(X))
    np.testing.assert_array_equal(restored.predict_annotator_proba(X), original.predict_annotator_proba(X))
    np.testing.assert_array_equal(restored.annotator_confusion_, original.annotator_confusion_)
    np.testing.assert_array_equal(restored.annotator_names_, original.annotator_names_)


def test_pickle_and_joblib_round_trips_predict_identically(small, tmp_path):
    X, Z = small
    clf = AnnotMixClassifier(**FAST, random_state=0).fit(X, Z)
    assert_same_model(pickle.loads(pickle.dumps(clf)), clf, X)
    joblib.dump(clf, tmp_path / "model.joblib")
    assert_same_model(joblib.load(tmp_path / "model.joblib"), clf, X)


def test_a_saved_pipeline_predicts_identically(small, tmp_path):
    X, Z = small
    pipe = make_pipeline(StandardScaler(), AnnotMixClassifier(**FAST, random_state=0)).fit(X, Z)
    joblib.dump(pipe, tmp_path / "pipe.joblib", compress=3)
    restored = joblib.load(tmp_path / "pipe.joblib")
    np.testing.assert_array_equal(restored.predict_proba(X), pipe.predict_proba(X))


def saved_as_if_on_cuda(clf, monkeypatch, dump):
    """Serialise ``clf`` as a CUDA-trained model would be: device attributes and tensor storages say cuda."""
    clf.set_params(device="cuda")
    clf.device_ = torch.device("cuda")
    clf.net_.device = "cuda"
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        return dump(clf)


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
@pytest.mark.parametrize("library", ["pickle", "joblib"])
@pytest.mark.parametrize("sparse", [False, True])
def test_model_saved_on_cuda_loads_and_predicts_on_the_cpu(small, monkeypatch, tmp_path, library, sparse):
    X, Z = small
    reference = AnnotMixClassifier(**FAST, sparse_annotator_updates=sparse, random_state=0).fit(X, Z)
    expected = reference.predict_proba(X), reference.predict_annotator_proba(X)
    if library == "pickle":
        blob = saved_as_if_on_cuda(reference, monkeypatch, pickle.dumps)
        load = lambda: pickle.loads(blob)  # noqa: E731
    else:
        path = tmp_path / "model.joblib"
        saved_as_if_on_cuda(reference, monkeypatch, lambda clf: joblib.dump(clf, path))
        load = lambda: joblib.load(path)  # noqa: E731

    with pytest.warns(DeviceWarning) as caught:
        restored = load()
    assert any("no CUDA devices" in str(w.message) for w in caught)
    assert restored.device_ == torch.device("cpu")
    assert torch.device(restored.net_.device) == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in restored.net_.module_.parameters())
    np.testing.assert_array_equal(restored.predict_proba(X), expected[0])
    np.testing.assert_array_equal(restored.predict_annotator_proba(X), expected[1])
    assert restored.device == "cuda"  # the parameter keeps what the user asked for
    with pytest.raises(ValueError, match="CUDA is not available"):
        restored.fit(X, Z)
    restored.set_params(device="cpu").fit(X, Z)


def test_the_cuda_simulation_really_writes_cuda_storages(monkeypatch):
    """Guard for the test above: without skorch's mapping, such bytes do not load on a CPU-only machine."""
    if torch.cuda.is_available():
        pytest.skip("CUDA storages load fine where CUDA exists")
    buffer = io.BytesIO()
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(torch.ones(2), buffer)
    buffer.seek(0)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(buffer)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_model_trained_on_a_gpu_predicts_in_a_process_without_cuda(small, tmp_path):
    X, Z = small
    clf = AnnotMixClassifier(**FAST, device="cuda", random_state=0).fit(X, Z)
    joblib.dump(clf, tmp_path / "gpu.joblib")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "proba.npy", clf.predict_proba(X))
    script = textwrap.dedent(
        f"""
        import warnings, joblib, numpy as np, torch
        assert not torch.cuda.is_available()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = joblib.load({str(tmp_path / "gpu.joblib")!r})
        proba = clf.predict_proba(np.load({str(tmp_path / "X.npy")!r}))
        np.testing.assert_allclose(proba, np.load({str(tmp_path / "proba.npy")!r}), atol=1e-5)
        assert str(clf.device_) == "cpu"
        """
    )
    env = {"CUDA_VISIBLE_DEVICES": "", "PATH": "", "PYTHONPATH": ":".join(sys.path)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env)
