import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix

from skannot import AnnotMixClassifier
from skannot._testing import small_settings
from skannot._validation import check_annotations
from skannot.annotations import long_to_matrix, majority_vote, matrix_to_long

FAST = small_settings(AnnotMixClassifier)


@pytest.fixture
def long_data():
    return pd.DataFrame(
        {
            "task": ["t3", "t1", "t1", "t2", "t3"],
            "worker": ["ann", "bob", "ann", "cy", "cy"],
            "label": ["dog", "cat", "cat", "dog", "cat"],
        }
    )


def test_long_to_matrix_keeps_task_and_worker_identities(long_data):
    Z = long_to_matrix(long_data)
    assert Z.index.tolist() == ["t3", "t1", "t2"] and Z.columns.tolist() == ["ann", "bob", "cy"]
    assert Z.index.name == "task" and Z.columns.name == "worker"
    assert Z.loc["t3", "ann"] == "dog" and Z.loc["t1", "bob"] == "cat" and pd.isna(Z.loc["t2", "ann"])
    assert Z.notna().sum().sum() == len(long_data)


def test_long_to_matrix_follows_given_task_and_worker_order(long_data):
    Z = long_to_matrix(long_data, tasks=["t1", "t2", "t3", "t4"], workers=["cy", "bob", "ann", "dee"])
    assert Z.index.tolist() == ["t1", "t2", "t3", "t4"]
    assert Z.columns.tolist() == ["cy", "bob", "ann", "dee"]
    assert Z.loc["t4"].isna().all() and Z["dee"].isna().all()
    assert Z.loc["t3", "cy"] == "cat"


def test_round_trip_through_the_matrix_restores_the_annotations(long_data):
    back = matrix_to_long(long_to_matrix(long_data))
    key = ["task", "worker"]
    pd.testing.assert_frame_equal(
        back.sort_values(key).reset_index(drop=True),
        long_data.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )


def test_integer_labels_survive_the_nan_of_the_matrix():
    data = pd.DataFrame({"item": [10, 10, 11], "rater": [7, 8, 8], "answer": [2, 0, 2]})
    Z = long_to_matrix(data, task="item", worker="rater", label="answer")
    assert Z.dtypes.map(lambda d: d.kind).tolist() == ["f", "f"]
    back = matrix_to_long(Z, task="item", worker="rater", label="answer")
    pd.testing.assert_frame_equal(back, data)


def test_matrix_to_long_of_a_plain_array_numbers_tasks_and_workers():
    long = matrix_to_long(np.array([[-1, 1], [0, -1]]))
    assert long.to_dict("list") == {"task": [0, 1], "worker": [1, 0], "label": [1, 0]}


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        (pd.DataFrame({"task": [1], "worker": [1]}), {}, r"no column\(s\) \['label'\]"),
        (pd.DataFrame({"task": [1, 1], "worker": [2, 2], "label": [0, 1]}), {}, "more than once"),
        (
            pd.DataFrame({"task": [1, 2], "worker": [2, 2], "label": [0, 1]}),
            {"tasks": [1]},
            "not in the given",
        ),
        (pd.DataFrame({"task": [1], "worker": [2], "label": [0]}), {"workers": [2, 2]}, "duplicates"),
    ],
)
def test_long_to_matrix_explains_bad_input(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        long_to_matrix(data, **kwargs)


def test_long_to_matrix_wants_a_dataframe():
    with pytest.raises(TypeError, match="DataFrame"):
        long_to_matrix([("t", "w", 1)])


def test_worker_names_reach_the_fitted_estimator(crowd_data):
    X, _, Z, _ = crowd_data
    X, Z = X[:200], Z[:200]
    workers = np.array([f"worker-{m}" for m in range(Z.shape[1])])
    long = matrix_to_long(pd.DataFrame(Z, columns=workers, index=[f"task-{i}" for i in range(len(Z))]))
    tasks = [f"task-{i}" for i in range(len(Z))]
    Z_frame = long_to_matrix(long, tasks=tasks, workers=workers)
    clf = AnnotMixClassifier(**FAST, random_state=0).fit(X, Z_frame)
    np.testing.assert_array_equal(clf.annotator_names_, workers)


def test_every_annotation_format_trains_the_same_model(crowd_data):
    """Int, float-with-NaN, object-with-None, DataFrame-with-NaN and string labels."""
    X, _, Z, _ = crowd_data
    X, Z = X[:200], Z[:200]
    names = np.array(["ant", "bee", "cow"], dtype=object)
    formats = {
        "int": Z,
        "float": np.where(Z >= 0, Z, np.nan),
        "object": np.where(Z >= 0, Z, None).astype(object),
        "frame": pd.DataFrame(np.where(Z >= 0, Z, np.nan), columns=list("abcdef")),
        "strings": np.where(Z >= 0, names[np.maximum(Z, 0)], None),
        "string frame": pd.DataFrame(np.where(Z >= 0, names[np.maximum(Z, 0)], None)).astype("string"),
    }
    reference = AnnotMixClassifier(**FAST, random_state=0).fit(X, Z)
    for name, Z_format in formats.items():
        clf = AnnotMixClassifier(**FAST, random_state=0).fit(X, Z_format)
        np.testing.assert_array_equal(clf.predict_proba(X), reference.predict_proba(X), err_msg=name)
        expected = names if "string" in name else [0, 1, 2]
        np.testing.assert_array_equal(clf.classes_, expected, err_msg=name)
        assert clf.score(X, Z_format) == reference.score(X, Z), name


def test_majority_vote_of_a_sparse_matrix_without_labels_marks_every_sample_missing():
    y = majority_vote(csr_matrix((3, 2), dtype=np.int64))
    np.testing.assert_array_equal(y, [-1, -1, -1])


def test_bool_labels_from_long_format_stay_bools():
    data = pd.DataFrame({"task": [1, 1, 2], "worker": ["a", "b", "a"], "label": [True, False, True]})
    Z = long_to_matrix(data)
    _, classes, _ = check_annotations(Z)
    assert classes.dtype == bool
    np.testing.assert_array_equal(classes, [False, True])
    assert matrix_to_long(Z)["label"].tolist() == [True, False, True]


def test_integer_ids_beyond_float_precision_survive_the_matrix():
    labels = [2**60, 2**60 + 1, 2**60 + 2, 2**60]
    data = pd.DataFrame({"task": [1, 1, 2, 3], "worker": ["a", "b", "a", "b"], "label": labels})
    Z = long_to_matrix(data)
    _, classes, _ = check_annotations(Z)
    assert classes.tolist() == sorted(set(labels))
    assert matrix_to_long(Z)["label"].tolist() == labels


def test_long_to_matrix_with_missing_label_gives_a_matrix_an_int_cv_accepts():
    from sklearn.model_selection import check_cv

    data = pd.DataFrame({"task": ["a", "a", "b", "c"], "worker": ["u", "v", "v", "u"], "label": [2, 0, 1, 2]})
    Z = long_to_matrix(data, missing_label=-1)
    assert (Z.dtypes == np.int64).all()
    np.testing.assert_array_equal(Z.to_numpy(), [[2, 0], [-1, 1], [2, -1]])
    assert list(Z.columns) == ["u", "v"] and list(Z.index) == ["a", "b", "c"]
    check_cv(2, Z, classifier=True)
    words = data.assign(label=data["label"].map({0: "cat", 1: "dog", 2: "owl"}))
    Z_words = long_to_matrix(words, missing_label="")
    np.testing.assert_array_equal(Z_words.to_numpy(), [["owl", "cat"], ["", "dog"], ["owl", ""]])
    check_cv(2, Z_words, classifier=True)
    # NaN stays the default.
    assert long_to_matrix(data).isna().sum().sum() == 2


@pytest.mark.parametrize(
    ("labels", "missing_label", "match"),
    [
        ([2, 0, 1, 2], 0, "is one of the labels"),
        ([2, 0, 1, 2], "", "must be an int"),
        (["x", "y", "x", "y"], -1, "must be a string"),
        ([0.5, 1.5, 0.5, 1.5], -1, "integer or string labels"),
    ],
)
def test_long_to_matrix_refuses_a_missing_label_of_the_wrong_kind(labels, missing_label, match):
    data = pd.DataFrame({"task": ["a", "a", "b", "c"], "worker": ["u", "v", "v", "u"], "label": labels})
    with pytest.raises(ValueError, match=match):
        long_to_matrix(data, missing_label=missing_label)
