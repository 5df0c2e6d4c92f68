"""Consensus labels, label quality and annotator reports, for every estimator of the family."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse
from scipy.special import logsumexp
from torch.nn import functional as F

import skannot._base
from skannot import AggregateClassifier, AnnotMixClassifier
from skannot._aggregation import dawid_skene
from skannot._annotators import annotator_indices
from skannot._testing import ESTIMATORS, small, small_crowd
from skannot._validation import check_annotations

QUALITY_COLUMNS = ["sample", "annotator", "label", "quality", "support", "consensus", "consensus_proba"]
VARIANTS = [(cls, {}) for cls in ESTIMATORS] + [(AggregateClassifier, {"aggregation": "dawid_skene"})]
VARIANT_IDS = [f"{cls.__name__}{'-' + '-'.join(p.values()) if p else ''}" for cls, p in VARIANTS]


@pytest.fixture(scope="module")
def data():
    X, y, Z = small_crowd()
    Z[:5] = -1  # items nobody labelled
    Z[5:10, 1:] = -1  # items with a single label
    return X, y, Z


@pytest.fixture(scope="module", params=VARIANTS, ids=VARIANT_IDS)
def fitted(request, data):
    X, _, Z = data
    cls, params = request.param
    return small(cls, random_state=0, max_epochs=5, **params).fit(X, Z)


def test_consensus_is_a_distribution_and_items_without_labels_get_p_y_given_x(fitted, data):
    X, _, Z = data
    proba = fitted.predict_consensus_proba(X, Z)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(proba[:5], fitted.predict_proba(X[:5]), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(fitted.predict_consensus(X, Z), fitted.classes_[proba.argmax(1)])
    nobody = np.full_like(Z, -1)
    np.testing.assert_allclose(fitted.predict_consensus_proba(X, nobody), fitted.predict_proba(X), rtol=1e-5)


def test_annot_mix_consensus_is_p_y_given_x_times_the_label_likelihoods(data):
    X, _, Z = data
    clf = small(AnnotMixClassifier, random_state=0, max_epochs=5).fit(X, Z)
    module = clf.net_.module_.eval()
    rows, annotators = np.nonzero(Z >= 0)
    labels = Z[rows, annotators]
    with torch.no_grad():
        logits, embedding = module.gt_model(torch.from_numpy(X))
        log_prior = F.log_softmax(logits, 1).double().numpy()
        log_confusion = module.log_confusion(embedding[rows], torch.from_numpy(annotators)).double().numpy()
    likelihood = log_confusion[np.arange(len(rows)), :, labels]  # log P(z | x, m, y) for every y
    joint = log_prior.copy()
    np.add.at(joint, rows, likelihood)
    expected = np.exp(joint - logsumexp(joint, 1, keepdims=True))
    np.testing.assert_allclose(clf.predict_consensus_proba(X, Z), expected, rtol=1e-4, atol=1e-7)

    # support: the other labels' likelihoods under a uniform prior; p(y = z | x) for a lone label
    others = joint[rows] - likelihood - log_prior[rows]
    alone = np.bincount(rows, minlength=len(X))[rows] == 1
    others = np.where(alone[:, None], log_prior[rows], others)
    support = np.exp(others - logsumexp(others, 1, keepdims=True))[np.arange(len(rows)), labels]
    table = clf.label_quality(X, Z)
    np.testing.assert_allclose(table["support"], support, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(table["quality"], expected[rows, labels], rtol=1e-4, atol=1e-7)


def test_chunked_consensus_equals_the_one_pass_result(data, monkeypatch):
    X, _, Z = data
    clf = small(AnnotMixClassifier, random_state=0, max_epochs=2).fit(X, Z)
    whole = clf.label_quality(X, Z)
    # A budget of a few pairs per chunk: dozens of chunks of a few rows each.
    monkeypatch.setattr(skannot._base, "_PAIR_BUDGET", 50)
    pd.testing.assert_frame_equal(clf.label_quality(X, Z), whole, rtol=1e-6)


def test_the_support_alone_needs_no_posterior_and_is_the_same(fitted, data):
    """What fit averages into annotator_accuracy_ is computed without an (n_samples, n_classes) array."""
    X, _, Z = data
    annotations = check_annotations(Z, classes=fitted.classes_)[0]
    X_valid = torch.from_numpy(X)
    posterior, support = fitted._consensus(X_valid, annotations)
    none, support_alone = fitted._consensus(X_valid, annotations, posterior=False)
    assert posterior.shape == (len(X), 3)
    if not isinstance(fitted, AggregateClassifier) or fitted.aggregation == "dawid_skene":
        assert none is None
    np.testing.assert_allclose(support_alone, support)


def test_majority_vote_consensus_is_the_vote_shares(data):
    X, _, Z = data
    clf = small(AggregateClassifier, random_state=0).fit(X, Z)
    proba = clf.predict_consensus_proba(X, Z)
    votes = np.stack([(Z == k).sum(1) for k in range(3)], 1)
    labelled = votes.sum(1) > 0
    np.testing.assert_allclose(proba[labelled], votes[labelled] / votes[labelled].sum(1, keepdims=True))
    table = clf.label_quality(X, Z)
    rows = table["sample"].to_numpy()
    others = votes[rows].sum(1) - 1
    agreeing = votes[rows, table["label"].to_numpy()] - 1
    shared = others > 0
    np.testing.assert_allclose(table["support"][shared], (agreeing / np.maximum(others, 1))[shared])


def test_dawid_skene_consensus_is_the_dawid_skene_posterior(data):
    X, _, Z = data
    clf = small(AggregateClassifier, aggregation="dawid_skene", random_state=0).fit(X, Z)
    result = dawid_skene(check_annotations(Z)[0], 3)
    labelled = (Z >= 0).any(1)
    proba = clf.predict_consensus_proba(X, Z)
    np.testing.assert_allclose(proba[labelled], result.posteriors[labelled], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(clf.class_prior_, result.priors)


def test_label_quality_has_one_row_per_label_and_sorts_wrong_labels_first(fitted, data):
    X, y, Z = data
    table = fitted.label_quality(X, Z)
    rows, annotators = np.nonzero(Z >= 0)
    assert list(table.columns) == QUALITY_COLUMNS
    np.testing.assert_array_equal(table["sample"], rows)
    np.testing.assert_array_equal(table["annotator"].astype(int), annotators)
    np.testing.assert_array_equal(table["label"], Z[rows, annotators])
    assert ((table["quality"] >= 0) & (table["quality"] <= 1)).all()
    assert ((table["support"] >= 0) & (table["support"] <= 1)).all()
    proba = fitted.predict_consensus_proba(X, Z)
    np.testing.assert_allclose(table["quality"], proba[rows, Z[rows, annotators]])
    np.testing.assert_array_equal(table["consensus"], fitted.predict_consensus(X, Z)[rows])
    np.testing.assert_allclose(table["consensus_proba"], proba.max(1)[rows])
    wrong = table["label"].to_numpy() != y[rows]
    # The wrong labels sit at the low end: their mean quality is far below the right ones'.
    assert table["quality"][wrong].mean() < table["quality"][~wrong].mean() - 0.2


def test_annotator_report_summarises_label_quality_and_on_training_data_gives_the_accuracy(fitted, data):
    X, _, Z = data
    report = fitted.annotator_report(X, Z)
    assert list(report.columns) == ["n_labels", "accuracy", "agreement", "fitted_accuracy"]
    assert report.index.name == "annotator"
    np.testing.assert_array_equal(report.index, fitted.annotator_names_)
    np.testing.assert_array_equal(report["n_labels"], (Z >= 0).sum(0))
    table = fitted.label_quality(X, Z)
    by_annotator = table.groupby("annotator")
    np.testing.assert_allclose(report["accuracy"], by_annotator["support"].mean().loc[report.index])
    agreement = (table["label"] == table["consensus"]).groupby(table["annotator"]).mean()
    np.testing.assert_allclose(report["agreement"], agreement.loc[report.index])
    np.testing.assert_allclose(report["accuracy"], fitted.annotator_accuracy_, rtol=1e-6)
    np.testing.assert_array_equal(report["fitted_accuracy"], fitted.annotator_accuracy_)
    # An annotator without labels in Z: NaN for what its labels would tell, the fitted accuracy kept.
    Z_without = Z.copy()
    Z_without[:, 2] = -1
    report = fitted.annotator_report(X, Z_without)
    assert report.loc[2, "n_labels"] == 0 and np.isnan(report.loc[2, ["accuracy", "agreement"]]).all()
    assert report.loc[2, "fitted_accuracy"] == fitted.annotator_accuracy_[2]


def test_new_items_and_dataframes_are_read_against_the_fitted_annotators(fitted, data):
    X, _, Z = data
    expected = fitted.predict_consensus_proba(X[100:], Z[100:])
    # A DataFrame's columns are matched by name, in any order; left-out annotators have no labels.
    frame = pd.DataFrame(Z[100:], columns=fitted.annotator_names_)
    np.testing.assert_allclose(fitted.predict_consensus_proba(X[100:], frame[[3, 1, 0, 2]]), expected)
    without = Z[100:].copy()
    without[:, 1] = -1
    np.testing.assert_allclose(
        fitted.predict_consensus_proba(X[100:], frame[[0, 2, 3]]),
        fitted.predict_consensus_proba(X[100:], without),
    )
    csr = sparse.csr_matrix((Z[100:][Z[100:] >= 0], np.nonzero(Z[100:] >= 0)), shape=Z[100:].shape)
    np.testing.assert_allclose(fitted.predict_consensus_proba(X[100:], csr), expected)


def test_sample_names_come_from_the_index_of_x_or_of_z(data):
    X, _, Z = data
    clf = small(AnnotMixClassifier, random_state=0).fit(X, Z)
    index = pd.Index([f"song{i}" for i in range(len(X))], name="song")
    rows = np.nonzero(Z >= 0)[0]
    table = clf.label_quality(pd.DataFrame(X, index=index), pd.DataFrame(Z, index=index))
    np.testing.assert_array_equal(table["sample"], index[rows])
    table = clf.label_quality(X, pd.DataFrame(Z, index=index))
    np.testing.assert_array_equal(table["sample"], index[rows])
    with pytest.raises(ValueError, match="index"):
        clf.label_quality(pd.DataFrame(X, index=index), pd.DataFrame(Z, index=index[::-1]))


def test_string_classes_and_named_annotators(data):
    X, _, Z = data
    names = np.array(["cat", "dog", "eel"])
    Z_named = pd.DataFrame(np.where(Z >= 0, names[np.maximum(Z, 0)], None), columns=list("abcd"))
    clf = small(AnnotMixClassifier, random_state=0).fit(X, Z_named)
    table = clf.label_quality(X, Z_named)
    assert set(table["annotator"]) == set("abcd") and set(table["label"]) <= set(names)
    assert set(clf.predict_consensus(X, Z_named)) <= set(names)
    np.testing.assert_array_equal(clf.annotator_report(X, Z_named).index, list("abcd"))
    np.testing.assert_allclose(
        clf.predict_annotator_proba(X[:4], annotators=["d", "b"]),
        clf.predict_annotator_proba(X[:4], annotators=[3, 1]),
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda Z: Z[:-1], "rows"),
        (lambda Z: Z[:, :3], "3 annotator columns but .* fitted with 4"),
        (lambda Z: np.where(Z == 2, 7, Z), r"labels \[7\] .* fitted on these classes"),
        (lambda Z: pd.DataFrame(Z, columns=["a", 1, 2, 3]), r"columns \['a'\] that are not annotators"),
    ],
    ids=["rows", "columns", "classes", "names"],
)
def test_annotations_that_do_not_match_the_fit_are_refused(fitted, data, change, message):
    X, _, Z = data
    with pytest.raises(ValueError, match=message):
        fitted.predict_consensus_proba(X, change(Z))


def test_annotator_indices_takes_names_first_and_indices_otherwise():
    np.testing.assert_array_equal(annotator_indices(["w3", "w1"], ["w1", "w2", "w3"]), [2, 0])
    np.testing.assert_array_equal(annotator_indices([1, 0], ["w1", "w2", "w3"]), [1, 0])
    # integer names (worker ids) mean the worker, not the column
    np.testing.assert_array_equal(annotator_indices([30], [10, 20, 30]), [2])
    np.testing.assert_array_equal(annotator_indices(np.array([2]), [10, 20, 30]), [2])
    assert annotator_indices([], ["a"]).shape == (0,)
    with pytest.raises(ValueError, match="neither annotator names nor column indices"):
        annotator_indices(["w9"], ["w1", "w2"])
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        annotator_indices([2], ["w1", "w2"])
    with pytest.raises(ValueError, match="1-D"):
        annotator_indices("w1", ["w1", "w2"])


# -- out-of-fold predictions -------------------------------------------------


def test_scikit_learns_cross_val_predict_does_not_apply_to_an_annotation_matrix(data):
    """It label-encodes each column of Z: with 5 annotators and 3 classes, 5 'probability' columns."""
    from sklearn.model_selection import cross_val_predict as sklearn_cross_val_predict

    from skannot.model_selection import cross_val_predict

    X, _, _ = data
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, len(X))
    Z = np.where(rng.random((len(X), 5)) < 0.6, y[:, None], -1)
    estimator = small(AnnotMixClassifier, random_state=0)
    with pytest.warns(RuntimeWarning, match="Number of classes in training fold"):
        theirs = sklearn_cross_val_predict(estimator, X, Z, cv=3, method="predict_proba")
    assert theirs.shape == (len(X), 5)  # (n_samples, n_annotators), not (n_samples, n_classes)
    ours = cross_val_predict(estimator, X, Z, cv=3)
    assert ours.shape == (len(X), 3)
    np.testing.assert_allclose(ours.sum(1), 1, rtol=1e-5)


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_cross_val_predict_predicts_each_sample_with_the_model_of_its_fold(cls, data):
    from sklearn.model_selection import KFold

    from skannot.model_selection import cross_val_predict

    X, _, Z = data
    estimator = small(cls, random_state=0, classes=[0, 1, 2])
    cv = KFold(3, shuffle=True, random_state=0)
    expected = np.empty((len(X), 3))
    expected_consensus = np.empty((len(X), 3))
    for train, test in cv.split(X):
        model = small(cls, random_state=0, classes=[0, 1, 2]).fit(X[train], Z[train])
        expected[test] = model.predict_proba(X[test])
        expected_consensus[test] = model.predict_consensus_proba(X[test], Z[test])
    np.testing.assert_allclose(cross_val_predict(estimator, X, Z, cv=cv), expected, rtol=1e-6)
    np.testing.assert_allclose(
        cross_val_predict(estimator, X, Z, cv=cv, method="predict_consensus_proba"),
        expected_consensus,
        rtol=1e-6,
    )
    labels = cross_val_predict(estimator, X, Z, cv=cv, method="predict_consensus")
    np.testing.assert_array_equal(labels, expected_consensus.argmax(1))


def test_cross_val_predict_keeps_every_class_in_every_fold_and_takes_pipelines(data):
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skannot.model_selection import cross_val_predict

    X, _, Z = data
    Z = np.where(Z == 2, 1, Z)
    Z[:10, 0] = 2  # class 2 only in the first fold of an unshuffled 3-fold split
    pipeline = make_pipeline(StandardScaler(), small(AnnotMixClassifier, random_state=0))
    proba = cross_val_predict(pipeline, X, Z, cv=KFold(3), method="predict_consensus_proba")
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    labels = cross_val_predict(pipeline, X, Z, method="predict", n_jobs=2)
    assert labels.shape == (len(X),) and set(labels) <= {0, 1, 2}


def test_cross_val_predict_refuses_what_it_cannot_do(data):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import ShuffleSplit

    from skannot.model_selection import cross_val_predict

    X, _, Z = data
    with pytest.raises(ValueError, match="method='decision_function' is not one of"):
        cross_val_predict(small(AnnotMixClassifier), X, Z, method="decision_function")
    with pytest.raises(ValueError, match="has no predict_consensus"):
        cross_val_predict(LogisticRegression(), X, Z[:, 0], method="predict_consensus")
    with pytest.raises(ValueError, match="exactly once"):
        cross_val_predict(small(AnnotMixClassifier), X, Z, cv=ShuffleSplit(2, random_state=0))


# -- annotator names in the plots, on pipelines --------------------------------


def test_plots_take_annotator_names_and_pipelines(data):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skannot.plotting import plot_annotator_accuracy, plot_annotator_confusion

    X, _, Z = data
    frame = pd.DataFrame(Z, columns=["ann", "bob", "cy", "dee"])
    pipeline = make_pipeline(StandardScaler(), small(AnnotMixClassifier, random_state=0)).fit(X, frame)
    final = pipeline[-1]
    fig = plot_annotator_confusion(pipeline, annotators=["dee", "bob"])
    panels = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == ["dee", "bob"]
    np.testing.assert_allclose(panels[0].images[0].get_array(), final.annotator_confusion_[3])
    ax = plot_annotator_accuracy(pipeline, annotators=["cy", "ann"])
    np.testing.assert_allclose([p.get_height() for p in ax.patches], final.annotator_accuracy_[[2, 0]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cy", "ann"]
    ax = plot_annotator_accuracy(pipeline, true=[0.9, 0.8, 0.7, 0.6], annotators=["bob"])
    np.testing.assert_allclose(ax.collections[0].get_offsets(), [[0.8, final.annotator_accuracy_[1]]])
    with pytest.raises(ValueError, match="neither annotator names nor column indices"):
        plot_annotator_confusion(pipeline, annotators=["zed"])
    plt.close("all")
