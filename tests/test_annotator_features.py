"""Annotator features: annot-mix's feature representations, new annotators, validation and the simulation."""

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.base import clone

from skannot import AnnotMixClassifier, MaDLClassifier
from skannot._annotator_features import AnnotatorFeatureEncoder
from skannot._nn import AnnotatorCorrection, AnnotatorFeatureMap, mix
from skannot._testing import ESTIMATORS, small_settings
from skannot.datasets import make_crowd_classification, simulate_feature_annotators

SMALL = small_settings(AnnotMixClassifier, max_epochs=2, hidden_sizes=(8,))
REPRESENTATIONS = ["features", "features+embedding"]


@pytest.fixture(scope="module")
def data():
    """120 items, 5 annotators (the last without labels) and 3 numeric annotator features."""
    crowd = make_crowd_classification(n_samples=120, n_features=4, n_annotators=5, random_state=0)
    X, Z = crowd.data.astype("float32"), crowd.annotations.copy()
    Z[:, 4] = -1
    A = np.random.default_rng(0).normal(size=(5, 3))
    return X, Z, A


#: The methods whose annotator model is a free matrix per annotator (or none): no features.
FREE_MATRIX_METHODS = [e for e in ESTIMATORS if e not in (AnnotMixClassifier, MaDLClassifier)]


def fit(X, Z, A, representation="auto", **params):
    return AnnotMixClassifier(
        **{**SMALL, **params}, annotator_features=A, annotator_representation=representation, random_state=0
    ).fit(X, Z)


# -- without features, exactly as before ------------------------------------------


def test_without_features_the_fit_is_unchanged(data):
    # Pinned from main before annotator features existed (same data, settings and seed).
    X, Z, _ = data
    clf = AnnotMixClassifier(
        max_epochs=2, hidden_sizes=(8,), annotator_embed_dim=4, annotator_hidden_size=4, random_state=1
    ).fit(X, Z)
    np.testing.assert_allclose(
        clf.predict_proba(X[:3]),
        [[0.48543170, 0.43120781, 0.08336036], [0.38241732, 0.41668078, 0.20090184],
         [0.50859720, 0.36978561, 0.12161712]],
        atol=1e-6,
    )  # fmt: skip
    np.testing.assert_allclose(
        clf.annotator_confusion_[4, 0], [0.89993553, 0.05001912, 0.05004537], atol=1e-6
    )
    np.testing.assert_allclose(
        clf.predict_annotator_proba(X[:1], annotators=[0, 4]),
        [[[0.46259063, 0.41649857, 0.12091064], [0.46258986, 0.41649786, 0.12091213]]],
        atol=1e-6,
    )
    assert clf.annotator_representation_ == "embedding" and clf.annotator_encoder_ is None
    assert clf.n_annotator_features_in_ == 0
    assert not hasattr(clf.net_.module_, "annotator_feature_map")


# -- fitting and predicting with features --------------------------------------------


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_fit_with_features_predicts_new_annotators(data, representation):
    X, Z, A = data
    clf = fit(X, Z, A, representation)
    assert clf.annotator_representation_ == representation and clf.n_annotator_features_in_ == 3
    new = np.random.default_rng(1).normal(size=(7, 3))
    proba = clf.predict_annotator_proba(X[:4], annotator_features=new)
    assert proba.shape == (4, 7, 3)
    np.testing.assert_allclose(proba.sum(-1), 1, rtol=1e-5)
    confusion = clf.predict_annotator_confusion(X, annotator_features=new)
    assert confusion.shape == (7, 3, 3)
    np.testing.assert_allclose(confusion.sum(-1), 1, rtol=1e-6)
    accuracy = clf.predict_annotator_accuracy(X, annotator_features=new)
    assert accuracy.shape == (7,) and ((accuracy > 0) & (accuracy < 1)).all()
    # Different features, different predictions.
    assert np.abs(proba[:, 0] - proba[:, 1]).max() > 0
    # The fitted annotators by default.
    assert clf.predict_annotator_confusion(X).shape == (5, 3, 3)


def test_features_of_fitted_annotators_give_their_predictions(data):
    X, Z, A = data
    clf = fit(X, Z, A, "features")
    np.testing.assert_allclose(
        clf.predict_annotator_proba(X[:6], annotator_features=A),
        clf.predict_annotator_proba(X[:6]),
        atol=1e-6,
    )
    np.testing.assert_allclose(
        clf.predict_annotator_confusion(X, annotator_features=A),
        clf.predict_annotator_confusion(X),
        atol=1e-6,
    )
    # Annotator 4 has no labels: its own features, not the average annotator, describe it.
    module = clf.net_.module_
    vectors = module.annotator_vectors(torch.arange(5))
    np.testing.assert_allclose(
        vectors[4].detach(),
        module.annotator_feature_map.linear(module.annotator_feature_map.features[4]).detach(),
    )
    assert not torch.allclose(vectors[4], vectors[:4].mean(0))


def test_accuracy_and_confusion_agree(data):
    X, Z, A = data
    clf = fit(X, Z, A, "features")
    # mean_x sum_y p(y|x) P(y|x,a,y) and the p(y|x)-weighted confusion share the weighted diagonal.
    accuracy = clf.predict_annotator_accuracy(X)
    confusion = clf.predict_annotator_confusion(X)
    mass = clf.predict_proba(X).mean(0)
    np.testing.assert_allclose(accuracy, (np.diagonal(confusion, axis1=1, axis2=2) * mass).sum(1), rtol=1e-4)


def test_correction_starts_at_zero_and_new_annotators_get_the_mean_correction(data):
    X, Z, A = data
    clf = fit(X, Z, A, "features+embedding", max_epochs=0)
    module = clf.net_.module_
    assert isinstance(module.annotator_embedding, AnnotatorCorrection)
    assert torch.count_nonzero(module.annotator_embedding.weight) == 0
    clf = fit(X, Z, A, "features+embedding", max_epochs=3)
    module = clf.net_.module_
    table = module.annotator_embedding.weight.detach()
    assert torch.count_nonzero(table[:4]) > 0 and torch.count_nonzero(table[4]) == 0
    new = torch.from_numpy(clf.annotator_encoder_.transform(A[:1]))
    expected = module.annotator_feature_map.encode(new) + table[:4].mean(0)
    torch.testing.assert_close(module.new_annotator_vectors(new).detach(), expected)


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_mixup_mixes_feature_vectors_and_both_table_paths_agree(data, representation):
    X, Z, A = data
    module = fit(X, Z, A, representation).net_.module_
    features = module.annotator_feature_map.features
    lam = torch.tensor([0.3])
    mixed_features = lam[:, None] * features[0] + (1 - lam[:, None]) * features[2]
    torch.testing.assert_close(
        module.annotator_feature_map.encode(mixed_features),
        mix(
            module.annotator_feature_map(torch.tensor([0])),
            module.annotator_feature_map(torch.tensor([2])),
            lam,
        ),
    )
    generator = torch.Generator().manual_seed(0)
    annotators = torch.randint(0, 5, (40,), generator=generator)
    embedding = torch.randn(40, 8, generator=generator)
    lam = torch.rand(40, generator=generator)
    partner = torch.randperm(40, generator=generator)
    projected = module.pair_confusion_logits(embedding, annotators, lam, partner, project_table=True)
    looked_up = module.pair_confusion_logits(embedding, annotators, lam, partner, project_table=False)
    torch.testing.assert_close(projected, looked_up, rtol=1e-4, atol=1e-5)


def test_features_help_annotators_with_few_labels():
    # Specialists of one of two class groups with an expertise level, about 2 labels each:
    # features predict the held-out annotators, one-hot annotators only as the average annotator.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 1000)
    X = (np.eye(4)[y] * 3 + rng.normal(size=(1000, 4))).astype(np.float32)
    crowd = simulate_feature_annotators(y, n_annotators=600, labels_per_sample=2, random_state=0)
    Z = crowd.annotations.copy()
    Z[:, 450:] = -1
    settings = {
        "max_epochs": 20,
        "hidden_sizes": (32,),
        "annotator_embed_dim": 16,
        "annotator_hidden_size": 16,
    }
    clf = AnnotMixClassifier(**settings, annotator_features=crowd.annotator_features, random_state=0).fit(
        X, Z
    )
    new = crowd.annotator_features.iloc[450:]
    estimated = clf.predict_annotator_accuracy(X, annotator_features=new)
    assert spearmanr(estimated, crowd.accuracy[450:]).statistic > 0.5  # 0.75 when written
    error = np.abs(clf.predict_annotator_confusion(X, annotator_features=new) - crowd.confusion[450:]).mean()
    one_hot = AnnotMixClassifier(**settings, random_state=0).fit(X, Z)
    baseline = np.abs(one_hot.predict_annotator_confusion(X)[450:] - crowd.confusion[450:]).mean()
    assert error < 0.7 * baseline, (error, baseline)  # 0.054 and 0.116 when written


# -- DataFrames and categorical features -----------------------------------------


def test_dataframe_rows_are_matched_to_annotator_names(data):
    X, Z, A = data
    names = ["ann", "bob", "cy", "dee", "eve"]
    Z_frame = pd.DataFrame(np.where(Z >= 0, Z, np.nan), columns=names)
    frame = pd.DataFrame(A, index=names, columns=["x", "y", "z"])
    ordered = fit(X, Z_frame, frame, "features")
    shuffled = fit(X, Z_frame, frame.iloc[[3, 1, 4, 0, 2]], "features")
    np.testing.assert_allclose(ordered.predict_proba(X[:5]), shuffled.predict_proba(X[:5]), atol=1e-6)
    np.testing.assert_array_equal(ordered.annotator_feature_names_in_, ["x", "y", "z"])
    # New annotators: columns by name, any order; the index is not read.
    new = frame.iloc[:2][["z", "x", "y"]].set_axis(["new1", "new2"])
    np.testing.assert_allclose(
        ordered.predict_annotator_proba(X[:3], annotator_features=new),
        ordered.predict_annotator_proba(X[:3], annotators=["ann", "bob"]),
        atol=1e-6,
    )


def test_categorical_columns_are_one_hot_encoded(data):
    X, Z, _ = data
    frame = pd.DataFrame(
        {
            "team": pd.Categorical(["a", "b", "a", "c", "b"]),
            "language": ["en", "de", "en", "fr", "de"],
            "senior": [True, False, False, True, True],
            "years": [1.0, 4.0, 2.5, 10.0, 0.5],
        }
    )
    clf = fit(X, Z, frame, "features")
    assert clf.n_annotator_features_in_ == 4
    assert clf.net_.module_.annotator_feature_map.features.shape == (5, 3 + 3 + 1 + 1)
    proba = clf.predict_annotator_proba(X[:2], annotator_features=frame.iloc[[0]])
    np.testing.assert_allclose(proba, clf.predict_annotator_proba(X[:2], annotators=[0]), atol=1e-6)
    with pytest.raises(ValueError, match="categorical columns"):
        clf.predict_annotator_proba(X[:2], annotator_features=np.zeros((1, 4)))


def test_encoder_standardises_and_ignores_unseen_categories():
    frame = pd.DataFrame({"kind": ["a", "b", "b", "a"], "level": [1.0, 2.0, 3.0, 4.0], "same": 7.0})
    encoder = AnnotatorFeatureEncoder()
    encoded = encoder.fit_transform(frame, [0, 1, 2, 3])
    assert encoded.shape == (4, 4) and encoder.categories_ == {"kind": ["a", "b"]}
    np.testing.assert_allclose(encoded.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(encoded.std(0), [1, 1, 1, 0], atol=1e-6)  # a constant column is only centred
    unseen = encoder.transform(pd.DataFrame({"kind": ["z"], "level": [2.5], "same": [7.0]}))
    # zeros in the one-hot block, standardised: minus its mean over its scale
    np.testing.assert_allclose(unseen[0, :2], -encoder.mean_[:2] / encoder.scale_[:2], atol=1e-6)
    np.testing.assert_allclose(unseen[0, 2:], 0, atol=1e-6)


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.zeros((4, 3)), "has 4 rows but Z has 5 annotators"),
        (np.zeros(5), "must be 2-D"),
        (np.zeros((5, 0)), "no columns"),
        (np.array([[0.0, np.nan]] * 5), "NaN or infinite"),
        (np.array([[0.0, np.inf]] * 5), "NaN or infinite"),
        (np.array([["a", "b"]] * 5, dtype=object), "must be numeric"),
        (
            pd.DataFrame({"x": np.zeros(5)}, index=[0, 1, 2, 3, 9]),
            r"no row for \[4\].*unknown annotators \[9\]",
        ),
        (pd.DataFrame({"x": np.zeros(5)}, index=[0, 1, 2, 3, 3]), "duplicate index"),
        (pd.DataFrame({"x": [0.0, 1, np.nan, 2, 3]}), "NaN or infinite"),
        (pd.DataFrame({"kind": ["a", None, "b", "a", "a"]}), "missing values"),
    ],
)
def test_bad_features_are_refused_at_fit(data, features, message):
    X, Z, _ = data
    clf = AnnotMixClassifier(**SMALL, annotator_features=features)
    with pytest.raises(ValueError, match=message):
        clf.fit(X, Z)
    assert not hasattr(clf, "net_")


def test_bad_features_are_refused_at_predict(data):
    X, Z, A = data
    clf = fit(X, Z, A, "features")
    with pytest.raises(
        ValueError, match="has 2 columns, but the model was fitted on annotator features with 3"
    ):
        clf.predict_annotator_proba(X[:2], annotator_features=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        clf.predict_annotator_confusion(X, annotator_features=np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="not both"):
        clf.predict_annotator_proba(X[:2], annotators=[0], annotator_features=A[:1])
    framed = fit(X, Z, pd.DataFrame(A, columns=["x", "y", "z"]), "features")
    with pytest.raises(ValueError, match=r"missing \['z'\], unexpected \['w'\]"):
        framed.predict_annotator_accuracy(X, annotator_features=pd.DataFrame(A[:1], columns=["x", "y", "w"]))
    plain = AnnotMixClassifier(**SMALL, random_state=0).fit(X, Z)
    with pytest.raises(ValueError, match="fitted without annotator_features"):
        plain.predict_annotator_proba(X[:2], annotator_features=A[:1])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"annotator_representation": "features"}, "needs annotator_features"),
        ({"annotator_representation": "features+embedding"}, "needs annotator_features"),
        ({"annotator_representation": "embedding", "annotator_features": np.zeros((5, 2))}, "ignores"),
        ({"annotator_features": np.zeros((5, 2)), "sparse_annotator_updates": True}, "has none"),
        ({"annotator_representation": "one-hot"}, "annotator_representation"),
    ],
)
def test_contradicting_parameters_are_refused(data, params, message):
    X, Z, _ = data
    with pytest.raises(ValueError, match=message):
        AnnotMixClassifier(**SMALL, **params).fit(X, Z)


@pytest.mark.parametrize("estimator", FREE_MATRIX_METHODS)
def test_methods_with_a_free_matrix_per_annotator_refuse_features(estimator):
    with pytest.raises(TypeError, match="cannot be computed from features"):
        estimator(annotator_features=np.zeros((3, 2)))


def test_sparse_updates_train_the_correction_table(data):
    X, Z, A = data
    clf = fit(X, Z, A, "features+embedding", sparse_annotator_updates=True, max_epochs=3)
    assert clf.sparse_annotator_updates_
    assert torch.count_nonzero(clf.net_.module_.annotator_embedding.weight[:4]) > 0
    assert not fit(X, Z, A, "features").sparse_annotator_updates_


# -- estimator contract: params, clone, pickle, warm start ----------------------------


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_clone_get_params_and_pickle(data, representation):
    X, Z, A = data
    clf = fit(X, Z, A, representation)
    params = clf.get_params()
    assert params["annotator_features"] is A and params["annotator_representation"] == representation
    copy = clone(clf)
    np.testing.assert_array_equal(copy.annotator_features, A)
    np.testing.assert_allclose(copy.fit(X, Z).predict_proba(X[:4]), clf.predict_proba(X[:4]), atol=1e-6)
    restored = pickle.loads(pickle.dumps(clf))
    new = A[:2] + 0.5
    np.testing.assert_allclose(
        restored.predict_annotator_proba(X[:4], annotator_features=new),
        clf.predict_annotator_proba(X[:4], annotator_features=new),
    )


def test_warm_start_continues_and_reads_the_current_features(data):
    X, Z, A = data
    clf = fit(X, Z, A, "features", warm_start=True)
    weights = clf.net_.module_.annotator_feature_map.linear.weight.detach().clone()
    encoder = clf.annotator_encoder_
    corrected = A.copy()
    corrected[0] += 1.0
    clf.set_params(annotator_features=corrected).fit(X, Z)
    module = clf.net_.module_
    assert clf.annotator_encoder_ is encoder  # the fitted encoding stays
    torch.testing.assert_close(
        module.annotator_feature_map.features, torch.from_numpy(encoder.transform(corrected))
    )
    assert not torch.equal(module.annotator_feature_map.linear.weight, weights)
    with pytest.raises(ValueError, match="warm_start=True continues"):
        clf.set_params(annotator_features=None, annotator_representation="auto").fit(X, Z)
    assert hasattr(clf, "net_")  # the refused warm start leaves the fit as it was
    with pytest.raises(ValueError, match="has 4 rows"):
        clf.set_params(annotator_features=A[:4], annotator_representation="features").fit(X, Z)


# -- the torch blocks -----------------------------------------------------------------


def test_feature_map_and_correction_blocks():
    features = torch.randn(6, 3)
    block = AnnotatorFeatureMap(features, 4)
    block.reset_parameters_(torch.Generator().manual_seed(0))
    torch.testing.assert_close(block.table(), block.linear(features))
    torch.testing.assert_close(block(torch.tensor([5, 0])), block.table()[[5, 0]])
    torch.testing.assert_close(block.encode(features[:2]), block.table()[:2])
    block.set_features(torch.zeros(6, 3))
    torch.testing.assert_close(block.table(), block.linear.bias.expand(6, 4))
    correction = AnnotatorCorrection(6, 4)
    correction.reset_parameters_(torch.Generator())
    assert torch.count_nonzero(correction.weight) == 0
    with torch.no_grad():
        correction.weight.copy_(torch.arange(24.0).view(6, 4))
    labelled = torch.tensor([True, False, True, False, False, False])
    torch.testing.assert_close(correction.mean_row(labelled), correction.weight[[0, 2]].mean(0))
    torch.testing.assert_close(correction.mean_row(torch.zeros(6, dtype=torch.bool)), torch.zeros(4))


# -- the simulation -------------------------------------------------------------------


@pytest.mark.parametrize("skill", ["specialty", "bias"])
def test_simulation_returns_features_and_true_confusions(skill):
    y = np.arange(6000) % 4
    crowd = simulate_feature_annotators(y, n_annotators=10, skill=skill, labels_per_sample=10, random_state=0)
    Z, confusion = crowd.annotations, crowd.confusion
    assert Z.shape == (6000, 10) and confusion.shape == (10, 4, 4)
    np.testing.assert_allclose(confusion.sum(-1), 1)
    assert (Z >= 0).all()
    counts = np.zeros((10, 4, 4))
    rows, cols = np.nonzero(Z >= 0)
    np.add.at(counts, (cols, y[rows], Z[rows, cols]), 1)
    np.testing.assert_allclose(counts / counts.sum(-1, keepdims=True), confusion, atol=0.04)
    np.testing.assert_allclose(crowd.accuracy, np.diagonal(confusion, axis1=1, axis2=2).mean(1))
    frame = crowd.annotator_features
    assert frame.shape == (10, 2) and list(frame.index) == list(range(10))
    level = frame.iloc[:, 1].to_numpy()
    if skill == "specialty":
        group = frame["specialty"].cat.codes.to_numpy()
        in_group = np.array([confusion[m, 2 * group[m], 2 * group[m]] for m in range(10)])
        np.testing.assert_allclose(in_group, 0.6 + 0.35 * level)
    else:
        np.testing.assert_allclose(
            np.diagonal(confusion, axis1=1, axis2=2), np.repeat((0.2 + 0.7 * level)[:, None], 4, 1)
        )
        favourite = frame["favourite"].cat.codes.to_numpy()
        other = (favourite + 1) % 4
        np.testing.assert_allclose(
            confusion[np.arange(10), other, favourite], 0.8 * (1 - (0.2 + 0.7 * level))
        )


def test_simulation_options_and_seeding():
    y = np.arange(200) % 3
    crowd = simulate_feature_annotators(
        y, n_annotators=30, labels_per_sample=2, feature_noise=0.5, n_noise_features=2, missing_label=-9,
        random_state=3,
    )  # fmt: skip
    assert list(crowd.annotator_features.columns) == ["specialty", "expertise", "noise0", "noise1"]
    assert ((crowd.annotations != -9).sum(1) == 2).all()
    again = simulate_feature_annotators(
        y, n_annotators=30, labels_per_sample=2, feature_noise=0.5, n_noise_features=2, missing_label=-9,
        random_state=3,
    )  # fmt: skip
    np.testing.assert_array_equal(crowd.annotations, again.annotations)
    pd.testing.assert_frame_equal(crowd.annotator_features, again.annotator_features)
    # Noise on the trait: the features differ from the clean ones, the confusions do not.
    clean = simulate_feature_annotators(y, n_annotators=30, labels_per_sample=2, random_state=3)
    np.testing.assert_allclose(clean.confusion, crowd.confusion)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"skill": "other"}, "skill="),
        ({"n_groups": 5}, "n_groups="),
        ({"labels_per_sample": 11}, "labels_per_sample="),
        ({"feature_noise": -1.0}, "feature_noise="),
        ({"n_noise_features": -1}, "n_noise_features="),
        ({"missing_label": 0}, "missing_label="),
        ({"n_annotators": 0}, "n_annotators="),
        ({"n_classes": 2}, "n_classes="),
    ],
)
def test_simulation_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate_feature_annotators(np.arange(30) % 3, **{"n_annotators": 10, **kwargs})


def test_accelerated_classifier_takes_features(data):
    accelerate = pytest.importorskip("accelerate")
    from skannot import AcceleratedAnnotMixClassifier

    X, Z, A = data
    clf = AcceleratedAnnotMixClassifier(
        accelerator=accelerate.Accelerator(cpu=True), **SMALL, annotator_features=A, random_state=0
    ).fit(X, Z)
    assert clf.annotator_representation_ == "features" and not clf.sparse_annotator_updates_
    assert clf.predict_annotator_proba(X[:2], annotator_features=A[:1]).shape == (2, 1, 3)


# -- MaDL: the same representations for its annotator embedding ------------------------

MADL_SMALL = small_settings(MaDLClassifier, max_epochs=2, hidden_sizes=(8,))


def fit_madl(X, Z, A, representation="auto", **params):
    params = {**MADL_SMALL, **params, "annotator_features": A, "random_state": 0}
    return MaDLClassifier(**params, annotator_representation=representation).fit(X, Z)


def test_madl_without_features_is_unchanged(data):
    # Pinned from main before MaDL took annotator features (same data, settings and seed).
    X, Z, _ = data
    clf = MaDLClassifier(**MADL_SMALL, random_state=1).fit(X, Z)
    np.testing.assert_allclose(
        clf.predict_proba(X[:3]),
        [[0.48558235, 0.42912957, 0.08528805], [0.38570702, 0.4144591, 0.19983393],
         [0.5071422, 0.36972502, 0.12313284]],
        atol=1e-6,
    )  # fmt: skip
    np.testing.assert_allclose(
        clf.annotator_confusion_[4, 0], [0.71391905, 0.14458991, 0.14149103], atol=1e-6
    )
    np.testing.assert_allclose(
        clf.predict_annotator_proba(X[:1], annotators=[0, 4]),
        [[[0.40517804, 0.41587913, 0.1789428], [0.38153875, 0.42720336, 0.19125792]]],
        atol=1e-6,
    )
    np.testing.assert_allclose(
        clf.annotator_weights_, [0.89318854, 0.92855763, 0.9227863, 1.1412994, 1.1141683], atol=1e-6
    )
    assert clf.annotator_representation_ == "embedding"


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_madl_with_features_predicts_new_annotators(data, representation):
    X, Z, A = data
    clf = fit_madl(X, Z, A, representation)
    module = clf.net_.module_
    assert clf.annotator_representation_ == representation and hasattr(module, "annotator_feature_map")
    new = np.random.default_rng(1).normal(size=(7, 3))
    proba = clf.predict_annotator_proba(X[:4], annotator_features=new)
    assert proba.shape == (4, 7, 3)
    np.testing.assert_allclose(proba.sum(-1), 1, rtol=1e-5)
    assert np.abs(proba[:, 0] - proba[:, 1]).max() > 0
    assert clf.predict_annotator_confusion(X, annotator_features=new).shape == (7, 3, 3)
    # The kernel weights are computed on the mapped embeddings of the training annotators.
    table = module.annotator_table().detach()
    assert table.shape == (5, MADL_SMALL.get("embed_dim", 16))
    assert clf.annotator_weights_.shape == (5,)
    np.testing.assert_allclose(clf.annotator_weights_.mean(), 1, rtol=1e-5)
    np.testing.assert_allclose(clf.annotator_weights_, module.annotator_weights().detach().numpy(), rtol=1e-6)


def test_madl_features_of_fitted_annotators_give_their_predictions(data):
    X, Z, A = data
    clf = fit_madl(X, Z, A, "features")
    np.testing.assert_allclose(
        clf.predict_annotator_proba(X[:6], annotator_features=A),
        clf.predict_annotator_proba(X[:6]),
        atol=1e-6,
    )
    # Annotator 4 has no labels: its own features describe it, not the average annotator.
    vectors = clf.net_.module_.eval().annotator_vectors(torch.arange(5)).detach()
    assert not torch.allclose(vectors[4], vectors[:4].mean(0))


def test_madl_correction_gives_unlabelled_and_new_annotators_the_mean_correction(data):
    X, Z, A = data
    clf = fit_madl(X, Z, A, "features+embedding", max_epochs=3)
    module = clf.net_.module_.eval()
    table = module.annotator_embedding.weight.detach()
    assert torch.count_nonzero(table[:4]) > 0 and torch.count_nonzero(table[4]) == 0
    mean = table[:4].mean(0)
    vectors = module.annotator_vectors(torch.arange(5)).detach()
    torch.testing.assert_close(vectors[4], module.annotator_feature_map(torch.tensor([4]))[0].detach() + mean)
    new = torch.from_numpy(clf.annotator_encoder_.transform(A[:1]))
    torch.testing.assert_close(
        module.new_annotator_vectors(new).detach(), module.annotator_feature_map.encode(new).detach() + mean
    )


def test_madl_refuses_contradicting_parameters_and_predicting_features_without_them(data):
    X, Z, A = data
    with pytest.raises(ValueError, match="needs annotator_features"):
        MaDLClassifier(**MADL_SMALL, annotator_representation="features").fit(X, Z)
    with pytest.raises(ValueError, match="ignores"):
        MaDLClassifier(**MADL_SMALL, annotator_features=A, annotator_representation="embedding").fit(X, Z)
    clf = MaDLClassifier(**MADL_SMALL, random_state=0).fit(X, Z)
    with pytest.raises(ValueError, match="fitted without annotator_features"):
        clf.predict_annotator_proba(X[:2], annotator_features=A[:1])
    with pytest.raises(ValueError, match="rows"):
        MaDLClassifier(**MADL_SMALL, annotator_features=A[:4]).fit(X, Z)


def test_madl_clone_pickle_and_warm_start_with_features(data):
    X, Z, A = data
    clf = fit_madl(X, Z, A, "features", warm_start=True)
    np.testing.assert_allclose(clone(clf).fit(X, Z).predict_proba(X[:4]), clf.predict_proba(X[:4]), atol=1e-6)
    restored = pickle.loads(pickle.dumps(clf))
    new = A[:2] + 0.5
    np.testing.assert_allclose(
        restored.predict_annotator_proba(X[:4], annotator_features=new),
        clf.predict_annotator_proba(X[:4], annotator_features=new),
    )
    corrected = A.copy()
    corrected[0] += 1.0
    clf.set_params(annotator_features=corrected).fit(X, Z)
    torch.testing.assert_close(
        clf.net_.module_.annotator_feature_map.features,
        torch.from_numpy(clf.annotator_encoder_.transform(corrected)),
    )


@pytest.mark.parametrize("estimator", [AnnotMixClassifier, MaDLClassifier])
def test_features_with_early_stopping_weights_and_a_warm_start(data, estimator):
    """Annotator features, sample and class weights, early stopping and warm starts work together."""
    X, Z, A = data
    settings = small_settings(estimator, max_epochs=4, random_state=0)
    weights = np.random.default_rng(1).uniform(0.5, 2, len(X))
    clf = estimator(
        **settings, annotator_features=A, early_stopping=True, n_iter_no_change=2, class_weight="balanced"
    ).fit(X, Z, sample_weight=weights)
    assert 1 <= clf.best_epoch_ <= 4 and np.isfinite(clf.history_[:, "valid_loss"]).all()
    assert clf.predict_annotator_proba(X[:2], annotator_features=A[:1]).shape == (2, 1, 3)
    clf = estimator(**settings, annotator_features=A, annotator_representation="features+embedding")
    clf.set_params(warm_start=True).fit(X, Z).fit(X, Z, sample_weight=weights)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_consensus(X, Z), clf.predict_consensus(X, Z))
