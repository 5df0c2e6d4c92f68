"""AnnotMixClassifier inside scikit-learn's tooling: pipelines, column transformers, parameters."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from torch import nn

from skannot import AnnotMixClassifier
from skannot._testing import small_settings

FAST = small_settings(AnnotMixClassifier)


@pytest.fixture(scope="module")
def small(crowd_data):
    X, _, Z, _ = crowd_data
    return X[:200], Z[:200]


@pytest.fixture(scope="module")
def tabular(crowd_data):
    """A DataFrame with numeric and categorical columns, and Z as a DataFrame with NaN."""
    X, y, Z, _ = crowd_data
    X, y, Z = X[:200], y[:200], Z[:200]
    colour = np.array(["red", "green", "blue"])[(y + (np.arange(len(y)) % 5 == 0)) % 3]
    frame = pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "noise": X[:, 2], "colour": colour})
    workers = [f"w{m}" for m in range(Z.shape[1])]
    return frame, pd.DataFrame(np.where(Z >= 0, Z, np.nan), columns=workers)


def test_pipeline_with_scaler_fits_on_annotations(small):
    X, Z = small
    pipe = make_pipeline(StandardScaler(), AnnotMixClassifier(**FAST, random_state=0)).fit(X, Z)
    assert pipe.predict(X).shape == (len(X),)
    assert pipe.predict_proba(X).shape == (len(X), 3)
    assert 0 <= pipe.score(X, Z) <= 1
    assert pipe[-1].n_features_in_ == X.shape[1] and pipe[-1].n_annotators_ == Z.shape[1]


def test_column_transformer_on_a_dataframe(tabular):
    frame, Z = tabular
    columns = ColumnTransformer(
        [
            ("numeric", StandardScaler(), ["x0", "x1", "noise"]),
            ("categorical", OneHotEncoder(sparse_output=False, handle_unknown="ignore"), ["colour"]),
        ]
    )
    pipe = make_pipeline(columns, AnnotMixClassifier(**FAST, random_state=0)).fit(frame, Z)
    np.testing.assert_array_equal(pipe.feature_names_in_, frame.columns)
    assert set(pipe.predict(frame.iloc[:10])) <= {0, 1, 2}
    np.testing.assert_array_equal(pipe[-1].annotator_names_, Z.columns)
    assert pipe[-1].n_features_in_ == 6

    pipe.set_output(transform="pandas").fit(frame, Z)
    assert pipe[-1].feature_names_in_.tolist() == [
        "numeric__x0",
        "numeric__x1",
        "numeric__noise",
        "categorical__colour_blue",
        "categorical__colour_green",
        "categorical__colour_red",
    ]
    assert pipe.predict(frame).shape == (len(frame),)


def test_dataframe_input_sets_and_checks_feature_names(tabular):
    frame, Z = tabular
    numeric = frame[["x0", "x1", "noise"]]
    clf = AnnotMixClassifier(**FAST, random_state=0).fit(numeric, Z)
    np.testing.assert_array_equal(clf.feature_names_in_, ["x0", "x1", "noise"])
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(numeric[["x1", "x0", "noise"]])


def test_prediction_checks_the_number_of_features(small):
    X, Z = small
    clf = AnnotMixClassifier(**FAST, random_state=0).fit(X, Z)
    message = "X has 1 features, but AnnotMixClassifier is expecting 5 features"
    for method in ("predict", "predict_proba", "predict_log_proba", "predict_annotator_proba"):
        with pytest.raises(ValueError, match=message):
            getattr(clf, method)(X[:, :1])
    with pytest.raises(ValueError, match=message):
        clf.score(X[:, :1], Z)


def test_minus_one_is_a_class_label_when_missing_label_is_none(small):
    X, Z = small
    y = np.where(Z[:, 0] >= 0, 2 * (Z[:, 0] > 0) - 1, 1)  # labels -1 and 1, nothing missing
    clf = AnnotMixClassifier(**FAST, missing_label=None, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, [-1, 1])


def test_get_params_lists_nested_parameters_and_clone_keeps_them():
    clf = AnnotMixClassifier(hidden_sizes=(8, 4), optimizer__weight_decay=1e-3, lr_scheduler__eta_min=1e-4)
    params = clf.get_params()
    assert params["hidden_sizes"] == (8, 4)
    assert params["optimizer__weight_decay"] == 1e-3 and params["lr_scheduler__eta_min"] == 1e-4
    twin = clone(clf)
    assert twin.get_params() == params
    assert twin.set_params(optimizer__weight_decay=0.0, alpha=2.0) is twin
    assert twin.get_params()["optimizer__weight_decay"] == 0.0 and twin.alpha == 2.0
    assert clf.get_params()["optimizer__weight_decay"] == 1e-3
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(weight_decay=1.0)


class Backbone(nn.Module):
    def __init__(self, n_features, n_classes, width=4):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, width), nn.ReLU())
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        embedding = self.body(x)
        return self.head(embedding), embedding


def test_grid_search_reaches_nested_and_backbone_parameters(small):
    X, Z = small
    grid = {"module__width": [3, 5], "optimizer__weight_decay": [0.0, 1e-3]}
    search = GridSearchCV(AnnotMixClassifier(Backbone, **FAST, random_state=0), grid, cv=2).fit(X, Z)
    assert len(search.cv_results_["params"]) == 4
    best = search.best_estimator_
    assert best.net_.module_.gt_model.head.in_features == search.best_params_["module__width"]
    weight_decay = best.net_.optimizer_.param_groups[0]["weight_decay"]
    assert weight_decay == search.best_params_["optimizer__weight_decay"]


def test_grid_search_over_the_default_backbone_sizes(small):
    X, Z = small
    search = GridSearchCV(
        AnnotMixClassifier(**FAST, random_state=0), {"hidden_sizes": [(4,), (8, 4)]}, cv=2
    ).fit(X, Z)
    sizes = [
        layer.out_features
        for layer in search.best_estimator_.net_.module_.gt_model.modules()
        if isinstance(layer, nn.Linear)
    ][:-1]
    assert tuple(sizes) == search.best_params_["hidden_sizes"]


def test_warm_start_continues_from_the_fitted_weights(small):
    X, Z = small
    clf = AnnotMixClassifier(**{**FAST, "max_epochs": 5}, alpha=0.0, warm_start=True, random_state=0)
    first = clf.fit(X, Z).history_[:, "train_loss"]
    second = clf.fit(X, Z).history_[:, "train_loss"]
    assert len(second) == 5  # history_ holds the latest fit only
    assert np.mean(second) < np.mean(first)
    assert not hasattr(clf, "partial_fit")
