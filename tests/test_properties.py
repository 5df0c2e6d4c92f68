"""Property-based tests: whatever annotation matrix a user passes, ``fit`` either
works and gives proper probabilities, or raises ValueError/TypeError naming the problem."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import sparse

from skannot import AnnotMixClassifier
from skannot._testing import small_settings
from skannot._validation import check_annotations

TINY = small_settings(
    AnnotMixClassifier, max_epochs=1, hidden_sizes=(4,), annotator_embed_dim=2, random_state=0
)
#: Words one of which an error message must contain to say what is wrong.
NAMES_THE_PROBLEM = ("Z ", "X ", "class", "sample", "label", "annotator", "eta", "feature")

LABEL_POOLS = {
    "int": st.lists(st.integers(-3, 1000), min_size=1, max_size=5, unique=True),
    "float": st.lists(
        st.sampled_from([0.0, 1.0, 2.0, 7.0, -2.0, 3.0, 0.5, np.inf]), min_size=1, max_size=4, unique=True
    ),
    "str": st.lists(st.text("abc", min_size=1, max_size=2), min_size=1, max_size=4, unique=True),
    "mixed": st.lists(st.sampled_from([0, 1, "a", "b", 2.0]), min_size=1, max_size=4, unique=True),
}


@st.composite
def annotation_problems(draw):
    """An (X, Z, params) triple: random shape, dtype, container, missing pattern and labels."""
    kind = draw(st.sampled_from(["int", "int", "str", "str", "float", "mixed"]))
    pool = draw(LABEL_POOLS[kind])
    n_samples = draw(st.sampled_from([0, 1, 2, *range(3, 13)]))
    n_annotators = draw(st.sampled_from([0, 1, 2, 3, 4]))
    shape = (n_samples, n_annotators)
    choice = np.array(
        draw(
            st.lists(
                st.integers(0, len(pool) - 1),
                min_size=n_samples * n_annotators,
                max_size=n_samples * n_annotators,
            )
        ),
        dtype=int,
    ).reshape(shape)
    missing = np.array(draw(st.lists(st.booleans(), min_size=choice.size, max_size=choice.size)), dtype=bool)
    missing = missing.reshape(shape)
    values = np.array(pool, dtype=object)[choice]
    container = draw(st.sampled_from(["numpy", "dataframe", "sparse", "list", "1d"]))
    params = {}
    if kind == "int":
        Z = np.where(missing, -1, values).astype(draw(st.sampled_from([np.int64, np.int32, np.int16])))
    elif kind == "float":
        Z = np.where(missing, np.nan, values).astype(draw(st.sampled_from([np.float64, np.float32])))
    elif kind == "str" and container == "numpy":
        Z = np.where(missing, "?", values).astype(str)
        params["missing_label"] = "?"
    else:
        Z = np.where(missing, None, values)
    if container == "dataframe":
        Z = pd.DataFrame(Z, columns=[f"annotator {m}" for m in range(n_annotators)])
    elif container == "sparse" and kind in ("int", "float"):
        rows, cols = np.nonzero(~missing)
        Z = sparse.csr_matrix((np.asarray(Z)[rows, cols], (rows, cols)), shape=shape)
    elif container == "list":
        Z = Z.tolist()
    elif container == "1d" and n_annotators >= 1:
        Z = Z[:, 0]
    n_rows = n_samples + draw(st.sampled_from([0, 0, 0, 1]))
    X = np.random.default_rng(0).normal(size=(n_rows, draw(st.integers(1, 3)))).astype(np.float32)
    if draw(st.integers(0, 9)) == 9 and X.size:
        X[0, 0] = np.nan
    if draw(st.booleans()):
        params["classes"] = draw(st.sampled_from([None, [0, 1, 2], ["a", "b", "c"], [0.0, 1.0, 2.0, 7.0]]))
    params["batch_size"] = draw(st.sampled_from([2, 3, 64]))
    params["alpha"] = draw(st.sampled_from([0.0, 1.0]))
    return X, Z, params


def _assert_names_the_problem(error):
    message = str(error)
    assert any(word in message for word in NAMES_THE_PROBLEM), message


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(annotation_problems())
def test_fit_works_or_explains_what_is_wrong(problem):
    X, Z, params = problem
    clf = AnnotMixClassifier(**TINY, **params)
    try:
        clf.fit(X, Z)
    except (ValueError, TypeError) as error:
        _assert_names_the_problem(error)
        return
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), len(clf.classes_))
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert np.isfinite(clf.annotator_confusion_).all()


@settings(max_examples=40, deadline=None)
@given(annotation_problems())
def test_validation_keeps_every_observed_label_once(problem):
    _, Z, params = problem
    try:
        annotations, classes, _ = check_annotations(
            Z, missing_label=params.get("missing_label", -1), classes=params.get("classes")
        )
    except (ValueError, TypeError) as error:
        _assert_names_the_problem(error)
        return
    assert annotations.indptr[0] == 0 and annotations.indptr[-1] == annotations.n_labels
    assert np.all(np.diff(annotations.indptr) >= 0)
    assert np.all((annotations.labels >= 0) & (annotations.labels < len(classes)))
    assert np.all((annotations.annotators >= 0) & (annotations.annotators < annotations.n_annotators))
    key = annotations.samples * annotations.n_annotators + annotations.annotators
    assert np.all(np.diff(key) > 0), "labels must be in CSR order with one label per (sample, annotator)"


@st.composite
def family_fits(draw):
    """A random estimator of the family with random small data and random, possibly absurd, settings."""
    from skannot._testing import ESTIMATORS

    cls = draw(st.sampled_from(ESTIMATORS))
    n_samples = draw(st.integers(2, 12))
    n_annotators = draw(st.integers(1, 4))
    n_classes = draw(st.integers(2, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    Z = rng.integers(0, n_classes, (n_samples, n_annotators))
    Z[rng.random(Z.shape) < draw(st.sampled_from([0.0, 0.3, 0.7]))] = -1
    scale = draw(st.sampled_from([1.0, 1.0, 1e10, 1e29]))
    X = (rng.normal(size=(n_samples, draw(st.integers(1, 3)))) * scale).astype(np.float32)
    params = {
        "max_epochs": draw(st.integers(1, 2)),
        "hidden_sizes": (4,),
        "batch_size": draw(st.sampled_from([2, 3, 64])),
        "batch_norm": draw(st.booleans()),
        "dropout": draw(st.sampled_from([0.0, 0.5])),
        "lr": draw(st.sampled_from([1e-3, 1e-2, 1.0, 1e6, 1e30])),
        "random_state": 0,
    }
    if "alpha" in cls().get_params():
        params["alpha"] = draw(st.sampled_from([0.0, 0.5, 1.0]))
    return cls, X, Z, params


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family_fits())
def test_fit_raises_or_gives_finite_outputs(problem):
    """Whatever the data and settings, a fit raises a clear error or every output is finite."""
    from skannot.exceptions import TrainingDivergedError

    cls, X, Z, params = problem
    clf = cls(**small_settings(cls, **params))
    try:
        clf.fit(X, Z)
    except (ValueError, TypeError, TrainingDivergedError):
        assert not hasattr(clf, "net_")
        return
    assert np.isfinite(clf.predict_proba(X)).all()
    assert np.isfinite(clf.annotator_confusion_).all() and np.isfinite(clf.annotator_accuracy_).all()
    assert np.isfinite(clf.predict_consensus_proba(X, Z)).all()
    assert np.isfinite(clf.label_quality(X, Z)["quality"].to_numpy()).all()
