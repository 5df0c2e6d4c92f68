import numpy as np
import pandas as pd
import pytest

from skannot._validation import check_annotations


def test_dense_int_matrix_to_csr():
    Z = np.array([[0, -1, 1], [-1, -1, -1], [2, 2, -1]])
    annotations, classes, names = check_annotations(Z)
    np.testing.assert_array_equal(classes, [0, 1, 2])
    np.testing.assert_array_equal(annotations.indptr, [0, 2, 2, 4])
    np.testing.assert_array_equal(annotations.annotators, [0, 2, 0, 1])
    np.testing.assert_array_equal(annotations.labels, [0, 1, 2, 2])
    np.testing.assert_array_equal(annotations.samples, [0, 0, 2, 2])
    np.testing.assert_array_equal(annotations.labels_per_annotator(), [2, 1, 1])
    assert names is None


def test_strings_nan_and_dataframe_names():
    Z = pd.DataFrame({"ann": ["cat", None, "dog"], "bob": [np.nan, "dog", "dog"]})
    annotations, classes, names = check_annotations(Z)
    np.testing.assert_array_equal(classes, ["cat", "dog"])
    np.testing.assert_array_equal(names, ["ann", "bob"])
    np.testing.assert_array_equal(annotations.labels, [0, 1, 1, 1])


def test_float_matrix_with_nan_and_one_dimensional_y():
    annotations, classes, _ = check_annotations(np.array([1.0, np.nan, 3.0]))
    np.testing.assert_array_equal(classes, [1, 3])
    assert annotations.n_annotators == 1
    np.testing.assert_array_equal(annotations.indptr, [0, 1, 1, 2])


def test_subset_keeps_pairs_of_selected_rows():
    Z = np.array([[0, 1], [-1, 1], [1, -1], [0, 0]])
    annotations, _, _ = check_annotations(Z)
    sub = annotations.subset([3, 1])
    np.testing.assert_array_equal(sub.indptr, [0, 2, 3])
    np.testing.assert_array_equal(sub.annotators, [0, 1, 1])
    np.testing.assert_array_equal(sub.labels, [0, 0, 1])


@pytest.mark.parametrize(
    "Z, kwargs, message",
    [
        (np.full((3, 2), -1), {}, "no observed label"),
        (np.zeros((2, 2, 2)), {}, "3 dimensions"),
        (np.array([[0, 1], [1, 5]]), {"classes": [0, 1]}, "not in classes"),
        (np.array([[0.5, 1.0]]), {}, "non-integral"),
        (np.array([["a", 1]], dtype=object), {}, "mixes string and numeric"),
        (np.array([[0, 1]]), {"missing_label": 1}, None),
        (np.array([[0, 1, -1]]), {"classes": [-1, 0, 1]}, "also a class label"),
        (np.array([[0, 1]]), {"n_samples": 3}, "X has 3 samples but Z has 1 rows"),
    ],
)
def test_bad_annotations_raise_clear_errors(Z, kwargs, message):
    if message is None:
        annotations, classes, _ = check_annotations(Z, **kwargs)
        np.testing.assert_array_equal(classes, [0])
        return
    with pytest.raises(ValueError, match=message):
        check_annotations(Z, **kwargs)
