import numpy as np
import pandas as pd
import pytest

from skannot._validation import check_aligned_index, check_annotations
from skannot.annotations import long_to_matrix


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


def test_mixed_type_advice_keeps_missing_entries_missing():
    Z = np.array([["a", 1], [None, -1], ["b", np.nan]], dtype=object)
    with pytest.raises(ValueError, match="mixes string and numeric") as error:
        check_annotations(Z)
    message = str(error.value)
    assert "observed = ~pd.isna(Z) & (Z != missing_label)" in message
    # The advice, followed: only the three observed labels become strings.
    observed = ~pd.isna(Z) & (Z != -1)
    Z[observed] = Z[observed].astype(str)
    annotations, classes, _ = check_annotations(Z)
    np.testing.assert_array_equal(classes, ["1", "a", "b"])
    assert annotations.n_labels == 3


def test_mixed_type_advice_works_for_a_dataframe():
    Z = pd.DataFrame({"ann": ["a", None, "b"], "bob": [1, -1, np.nan]}, dtype=object)
    observed = ~pd.isna(Z) & (Z != -1)
    Z[observed] = Z[observed].astype(str)
    annotations, classes, _ = check_annotations(Z)
    np.testing.assert_array_equal(classes, ["1", "a", "b"])
    assert annotations.n_labels == 3


@pytest.mark.parametrize(
    "Z, text",
    [
        (np.array([["a", "-1"], ["b", "a"]]), "-1"),
        (np.array([["a", "-1.0"], ["b", "a"]]), "-1.0"),
        (np.array([["a", "nan"], ["b", "a"]]), "nan"),
        (np.array([["a", "None"], ["b", "a"]], dtype=object), "None"),
        (np.array([[1, None], [-1, 0]], dtype=object).astype(str), "-1"),
        (pd.DataFrame({"ann": ["a", "<NA>"], "bob": ["b", "a"]}), "<NA>"),
    ],
)
def test_missing_markers_turned_into_strings_are_refused(Z, text):
    with pytest.raises(ValueError, match=f"'{text}'.* as string labels, which look like missing") as error:
        check_annotations(Z)
    assert f"pass missing_label='{text}'" in str(error.value)


def test_a_string_missing_marker_can_be_named_or_kept_as_a_class():
    Z = np.array([["a", "-1"], ["b", "a"]])
    annotations, classes, _ = check_annotations(Z, missing_label="-1")
    np.testing.assert_array_equal(classes, ["a", "b"])
    assert annotations.n_labels == 3
    _, classes, _ = check_annotations(Z, classes=["-1", "a", "b"])
    np.testing.assert_array_equal(classes, ["-1", "a", "b"])


@pytest.mark.parametrize(
    "make",
    [
        lambda labels: pd.DataFrame({"ann": labels, "bob": labels[::-1]}),
        lambda labels: pd.DataFrame({"ann": pd.array([*labels, pd.NA], dtype="Int64")}),
        lambda labels: pd.DataFrame({"ann": [*labels, -1], "bob": [float(2**60), np.nan, np.nan, np.nan]}),
        lambda labels: pd.DataFrame({"ann": np.array(labels, dtype=np.uint64)}),
        lambda labels: pd.Series(labels),
        lambda labels: np.array([*labels, None], dtype=object),
        lambda labels: np.array(labels),
    ],
    ids=["int64", "Int64-with-NA", "int-next-to-float", "uint64", "series", "object", "numpy"],
)
def test_integer_labels_beyond_float_precision_stay_apart(make):
    labels = [2**60, 2**60 + 1, 2**60 + 2]
    _, classes, _ = check_annotations(make(labels))
    assert classes.dtype.kind in "iu"
    assert [int(c) for c in classes] == labels


@pytest.mark.parametrize(
    "Z",
    [
        np.array([[True, None], [False, True]], dtype=object),
        pd.DataFrame({"ann": pd.array([True, pd.NA, False], dtype="boolean")}),
        pd.DataFrame({"ann": [True, np.nan, False]}),
        np.array([[True, False]]),
    ],
    ids=["object-with-None", "pandas-boolean", "object-column-with-NaN", "numpy-bool"],
)
def test_bool_labels_keep_their_type(Z):
    annotations, classes, _ = check_annotations(Z)
    assert classes.dtype == bool
    np.testing.assert_array_equal(classes, [False, True])


def test_bool_and_numeric_labels_together_are_refused():
    with pytest.raises(ValueError, match="mixes boolean and numeric labels"):
        check_annotations(np.array([[True, 2]], dtype=object))


@pytest.mark.parametrize("Z", [np.array([[0, 1], [1, 0]]), np.array([[0.0, np.nan], [1.0, 0.0]])])
def test_missing_label_pandas_na_marks_nan_none_and_na(Z):
    annotations, classes, _ = check_annotations(Z, missing_label=pd.NA)
    np.testing.assert_array_equal(classes, [0, 1])
    Z = np.array([["a", pd.NA], [None, np.nan], ["b", "a"]], dtype=object)
    annotations, classes, _ = check_annotations(Z, missing_label=pd.NA)
    np.testing.assert_array_equal(classes, ["a", "b"])
    assert annotations.n_labels == 3


@pytest.mark.parametrize("missing_label", [[-1], (-1, None), np.array([-1, 0])])
def test_a_missing_label_that_is_not_one_value_is_refused(missing_label):
    with pytest.raises(ValueError, match="missing_label=.* must be a single value"):
        check_annotations(np.array([[0, 1]]), missing_label=missing_label)


@pytest.mark.parametrize(
    "Z, classes, message",
    [
        ([[0, 1]], [0, 1, None], r"classes=\[0, 1, None\] contains a missing value"),
        ([[0, 1]], [0, 1, np.nan], "contains a missing value"),
        ([[0, 1]], ["0", "1"], "Z holds numeric labels but classes are strings"),
        ([["a", "b"]], [0, 1], "Z holds string labels but classes are numeric"),
        ([[0, 1]], [0, 1, {}], "classes contains a label of type dict"),
        ([[0, 1]], [[0, 1]], "non-empty 1-D"),
    ],
)
def test_bad_classes_are_refused_with_clear_errors(Z, classes, message):
    with pytest.raises(ValueError, match=message):
        check_annotations(Z, classes=classes)


@pytest.mark.parametrize(
    "Z, message",
    [
        (pd.DataFrame({"ann": [[0], 1]}), r"Z contains a label of type list \(\[0\]\)"),
        (pd.DataFrame({"ann": [{"a": 1}, 1]}), "Z contains a label of type dict"),
        (pd.DataFrame({"ann": [pd.Timestamp(0), pd.Timestamp(1)]}), "Z contains a label of type Timestamp"),
        (np.array([[pd.Timestamp(0), None]], dtype=object), "Z contains a label of type Timestamp"),
        ([[[0], 1], [1, 0]], "Z cannot be read as an annotation matrix"),
    ],
)
def test_labels_that_are_not_labels_are_refused_naming_z(Z, message):
    with pytest.raises(ValueError, match=message):
        check_annotations(Z)


@pytest.fixture
def tasks_and_labels():
    X = pd.DataFrame({"x": [0.1, 0.2, 0.3]}, index=pd.Index(["t1", "t2", "t3"], name="task"))
    data = pd.DataFrame(
        {"task": ["t3", "t1", "t2", "t1"], "worker": ["a", "a", "b", "b"], "label": [0, 1, 1, 0]}
    )
    return X, data


def test_aligned_index_refuses_z_in_the_task_order_of_long_format(tasks_and_labels):
    X, data = tasks_and_labels
    Z = long_to_matrix(data)  # rows in order of first appearance: t3, t1, t2
    with pytest.raises(ValueError, match="same index labels in another order") as error:
        check_aligned_index(X, Z)
    assert "row 0 of X is 't1' but row 0 of Z is 't3'" in str(error.value)
    assert "Z = Z.loc[X.index]" in str(error.value) and "tasks=X.index" in str(error.value)
    check_aligned_index(X, Z.loc[X.index])
    check_aligned_index(X, long_to_matrix(data, tasks=X.index))
    check_aligned_index(X, Z.loc[X.index, "a"])  # a Series carries its index too
    with pytest.raises(ValueError, match="another order"):
        check_aligned_index(X, Z["a"])


def test_aligned_index_refuses_other_labels(tasks_and_labels):
    X, data = tasks_and_labels
    Z = long_to_matrix(data).rename(index={"t2": "t9"})
    with pytest.raises(
        ValueError, match="different labels \\(X has 't2', not in Z; Z has 't9', not in X\\)"
    ) as error:
        check_aligned_index(X, Z)
    assert "Z.reindex(X.index)" in str(error.value) and "reset_index(drop=True)" in str(error.value)
    with pytest.raises(ValueError, match=r"\(X has 3, not in Z; Z has 10, not in X\)"):
        check_aligned_index(X.set_axis([1, 2, 3]), Z.set_axis([1, 2, 10]))


def _frame(values, index=None):
    return pd.DataFrame({"a": values}, index=index)


@pytest.mark.parametrize(
    "X, Z",
    [
        (np.zeros((3, 1)), _frame([0, 1, 1], ["t3", "t1", "t2"])),
        (_frame([0.1, 0.2, 0.3]), _frame([0, 1, 1], ["t3", "t1", "t2"])),
        (_frame([0.1, 0.2, 0.3], ["t1", "t2", "t3"]), np.array([[0], [1], [1]])),
        (_frame([0.1, 0.2, 0.3], ["t1", "t2", "t3"]), _frame([0, 1, 1])),
        (_frame([0.1, 0.2], ["t1", "t2"]), _frame([0, 1, 1], [5, 6, 9])),
    ],
    ids=["numpy-X", "default-index-X", "numpy-Z", "default-index-Z", "other-length"],
)
def test_aligned_index_checks_only_two_carried_indexes_of_one_length(X, Z):
    check_aligned_index(X, Z)


def test_a_sliced_range_index_is_an_index():
    X = pd.DataFrame({"x": np.arange(6.0)}).iloc[3:]
    Z = pd.DataFrame({"a": [0, 1, 1, 0, 1, 0]}).iloc[[4, 3, 5]]
    with pytest.raises(ValueError, match="another order"):
        check_aligned_index(X, Z)
    check_aligned_index(X, Z.sort_index())


def test_integer_labels_at_the_float_precision_bound_stay_apart():
    Z = pd.DataFrame({"ann": pd.array([2**53, 2**53 + 1, pd.NA], dtype="Int64"), "bob": [np.nan, 1.0, 2.0]})
    _, classes, _ = check_annotations(Z)
    assert classes.tolist() == [1, 2, 2**53, 2**53 + 1]


def test_an_empty_nullable_integer_column_takes_the_float_path():
    Z = pd.DataFrame({"ann": pd.array([pd.NA, pd.NA], dtype="Int64"), "bob": [1.0, 2.0]})
    annotations, classes, _ = check_annotations(Z)
    np.testing.assert_array_equal(classes, [1, 2])
    np.testing.assert_array_equal(annotations.annotators, [1, 1])


@pytest.mark.parametrize("labels", [[2**70, 1], [-5, 2**63 + 1]])
def test_integer_labels_beyond_64_bits_are_refused(labels):
    with pytest.raises(ValueError, match="no 64-bit integer type holds together"):
        check_annotations(np.array([labels], dtype=object))
