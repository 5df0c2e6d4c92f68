import numpy as np
import pytest
import torch
from skorch.dataset import Dataset as SkorchDataset
from torch.utils.data import Dataset, TensorDataset

from skannot import AnnotMixClassifier, _base, _large_data
from skannot._testing import small_settings
from skannot.datasets import simulate_annotators

SMALL = small_settings(AnnotMixClassifier, random_state=0)


@pytest.fixture(scope="module")
def memmapped(tmp_path_factory):
    """2,000 rows of features in a memory-mapped .npy file, and their annotations."""
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 3, n)
    X = (rng.normal(size=(n, 6)) + y[:, None]).astype(np.float32)
    Z, _ = simulate_annotators(X, y, n_annotators=5, accuracy=(0.4, 0.9), labels_per_sample=2, random_state=1)
    Z[:7] = -1  # samples without labels do not enter training
    path = tmp_path_factory.mktemp("large") / "X.npy"
    np.save(path, X)
    return X, Z, np.load(path, mmap_mode="r")


@pytest.fixture(scope="module")
def in_memory(memmapped):
    X, Z, _ = memmapped
    return AnnotMixClassifier(**SMALL).fit(X, Z)


class ItemDataset(Dataset):
    """A plain torch Dataset of (x, annotation_row) items, counting the rows of each read."""

    def __init__(self, X, Z, batched=False):
        self.X, self.Z = X, Z
        self.largest_read = 0
        if batched:
            self.__getitems__ = self._getitems

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        self.largest_read = max(self.largest_read, 1)
        return torch.from_numpy(np.array(self.X[i])), list(self.Z[i])

    def _getitems(self, indices):
        self.largest_read = max(self.largest_read, len(indices))
        return [(self.X[i], self.Z[i]) for i in indices]


def assert_same_fit(a, b, X):
    np.testing.assert_array_equal(a.history_[:, "train_loss"], b.history_[:, "train_loss"])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.annotator_confusion_, b.annotator_confusion_)
    np.testing.assert_array_equal(a.annotator_accuracy_, b.annotator_accuracy_)


def test_memmap_dataset_fits_exactly_like_arrays(memmapped, in_memory):
    X, Z, X_disk = memmapped
    clf = AnnotMixClassifier(**SMALL).fit(SkorchDataset(X_disk, Z))
    assert_same_fit(in_memory, clf, X)
    assert clf.n_features_in_ == 6 and clf.n_annotators_ == 5
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    np.testing.assert_array_equal(clf.n_labels_per_annotator_, in_memory.n_labels_per_annotator_)


@pytest.mark.parametrize("batched", [False, True])
def test_item_datasets_fit_like_arrays(memmapped, in_memory, batched):
    X, Z, X_disk = memmapped
    clf = AnnotMixClassifier(**SMALL).fit(ItemDataset(X_disk, Z, batched=batched))
    assert_same_fit(in_memory, clf, X)


def test_tensor_dataset_fits_like_arrays(memmapped, in_memory):
    X, Z, _ = memmapped
    clf = AnnotMixClassifier(**SMALL).fit(TensorDataset(torch.from_numpy(X), torch.from_numpy(Z)))
    assert_same_fit(in_memory, clf, X)


def test_predictions_on_a_dataset_match_arrays(memmapped, in_memory):
    X, Z, X_disk = memmapped
    expected = in_memory.predict_proba(X)
    np.testing.assert_array_equal(in_memory.predict_proba(SkorchDataset(X_disk)), expected)
    np.testing.assert_array_equal(in_memory.predict(ItemDataset(X_disk, Z)), in_memory.predict(X))
    np.testing.assert_array_equal(
        in_memory.predict_annotator_proba(SkorchDataset(X_disk[:50])),
        in_memory.predict_annotator_proba(X[:50]),
    )


def test_features_are_read_in_bounded_chunks(memmapped, monkeypatch):
    X, Z, X_disk = memmapped
    monkeypatch.setattr(_large_data, "_SCAN_ROWS", 300)
    monkeypatch.setattr(_base, "_ROW_CHUNK", 300)
    data = ItemDataset(X_disk, Z, batched=True)
    clf = AnnotMixClassifier(**SMALL, batch_size=64).fit(data)
    clf.predict_proba(data)
    assert 64 <= data.largest_read <= 300


def test_string_labels_and_classes_from_items():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3)).astype(np.float32)
    words = np.array(["cat", "dog", None], dtype=object)
    Z = words[rng.integers(0, 3, size=(60, 4))]
    Z[0] = ["cat", "dog", "cat", "dog"]
    kwargs = {**SMALL, "missing_label": None, "classes": ["bird", "cat", "dog"]}
    expected = AnnotMixClassifier(**kwargs).fit(X, Z)
    clf = AnnotMixClassifier(**kwargs).fit(ItemDataset(X, Z))
    np.testing.assert_array_equal(clf.classes_, ["bird", "cat", "dog"])
    np.testing.assert_array_equal(clf.predict_proba(X), expected.predict_proba(X))


def test_single_annotator_items():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    expected = AnnotMixClassifier(**SMALL).fit(X, y)
    clf = AnnotMixClassifier(**SMALL).fit(SkorchDataset(X, y))
    assert clf.n_annotators_ == 1
    np.testing.assert_array_equal(clf.predict_proba(X), expected.predict_proba(X))


def test_dataset_errors_tell_what_to_do(memmapped):
    X, Z, X_disk = memmapped
    clf = AnnotMixClassifier(**SMALL)
    with pytest.raises(ValueError, match="pass Z=None"):
        clf.fit(SkorchDataset(X_disk, Z), Z)
    with pytest.raises(ValueError, match=r"no annotations \(y is None\)"):
        clf.fit(SkorchDataset(X_disk))
    bad = X[:100].copy()
    bad[40, 2] = np.nan
    with pytest.raises(ValueError, match="row 40 contains NaN"):
        clf.fit(SkorchDataset(bad, Z[:100]))
    ragged = [(X[0], [0, 1]), (X[1], [1])]
    with pytest.raises(ValueError, match="differ in length"):
        clf.fit(ragged_dataset(ragged))
    with pytest.raises(ValueError, match="labels .* not in classes"):
        AnnotMixClassifier(**SMALL, classes=[0, 1]).fit(SkorchDataset(X_disk, Z))
    fitted = AnnotMixClassifier(**SMALL).fit(SkorchDataset(X_disk, Z))
    with pytest.raises(ValueError, match="has 4 features"):
        fitted.predict(SkorchDataset(X[:, :4]))


def ragged_dataset(items):
    class Items(Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            return items[i]

    return Items()


def test_warm_start_on_a_dataset_checks_features(memmapped):
    X, Z, X_disk = memmapped
    clf = AnnotMixClassifier(**SMALL, warm_start=True).fit(SkorchDataset(X_disk, Z))
    clf.fit(SkorchDataset(X_disk, Z))
    assert len(clf.history_) == 2
    with pytest.raises(ValueError, match="fitted on 6"):
        clf.fit(SkorchDataset(np.ascontiguousarray(X[:, :5]), Z))
