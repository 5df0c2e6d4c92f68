import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV

from skannot import AnnotMixClassifier


def test_grid_search_on_a_dask_cluster_equals_the_local_search(crowd_data):
    X, _, Z, _ = crowd_data
    X, Z = X[:300], Z[:300]
    estimator = AnnotMixClassifier(
        max_epochs=2, hidden_sizes=(8,), annotator_embed_dim=4, annotator_hidden_size=4, random_state=0
    )
    grid = {"alpha": [0.0, 1.0], "eta": [0.7, 0.9]}
    local = GridSearchCV(estimator, grid, cv=2).fit(X, Z)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        remote = GridSearchCV(estimator, grid, cv=2, n_jobs=-1).fit(X, Z)
    for key in ["split0_test_score", "split1_test_score", "mean_test_score", "rank_test_score"]:
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.predict_proba(X), local.predict_proba(X))
