# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # A tabular workflow with crowd annotations
#
# From a crowdsourcing export to a tuned, inspected classifier, without any
# ground-truth label:
#
# 1. load the instances and the annotations in long format (one row per task,
#    worker and label), and turn the annotations into a matrix `Z`;
# 2. put `AnnotMixClassifier` in a scikit-learn pipeline;
# 3. choose the mixup strength `alpha` by cross-validation on held-out
#    *annotations*;
# 4. read each annotator's estimated confusion matrix.
#
# The annotations are simulated here so that the example runs offline and we
# can compare the estimates with the truth at the end; with real data, step 1
# is `pd.read_csv` of the export.

# %%
import os

import numpy as np
import pandas as pd
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skannot import AnnotMixClassifier
from skannot.annotations import long_to_matrix, majority_vote, matrix_to_long
from skannot.datasets import simulate_annotators
from skannot.metrics import annotation_accuracy_scorer, annotation_log_likelihood_scorer
from skannot.model_selection import AnnotationStratifiedKFold

# SKANNOT_EXAMPLE_FAST=1 (set by the test suite) trains a tiny network briefly; the
# results are then meaningless. Otherwise the estimator runs with its defaults.
FAST = os.environ.get("SKANNOT_EXAMPLE_FAST") == "1"
SETTINGS = {"max_epochs": 3, "hidden_sizes": (16,), "annotator_embed_dim": 8} if FAST else {}

# %% [markdown]
# ## 1. Instances and annotations
#
# 178 Italian wines from three cultivars, 13 chemical measurements each. Each
# wine gets an id, as a crowdsourcing task would.

# %%
wine = load_wine(as_frame=True)
X = wine.data.set_axis([f"wine-{i:03d}" for i in range(len(wine.data))])
cultivars = np.array(["barolo", "grignolino", "barbera"])
truth = pd.Series(cultivars[wine.target], index=X.index)

# Eight workers of very different quality; each wine is labelled by three of them.
Z_sim, true_confusion = simulate_annotators(
    X, wine.target, n_annotators=8, accuracy=(0.35, 0.95), labels_per_sample=3, random_state=0
)
workers = [f"worker-{m}" for m in range(8)]
export = matrix_to_long(pd.DataFrame(Z_sim, index=X.index, columns=workers))
export["label"] = cultivars[export["label"]]
export.head()

# %% [markdown]
# The export is what platforms and crowd-kit use. `long_to_matrix` pivots it
# into `Z`, one row per wine in the order of `X`, one column per worker, NaN
# where a worker did not label a wine.

# %%
Z = long_to_matrix(export, tasks=X.index)
print(Z.shape, "labels observed:", int(Z.notna().sum().sum()))
Z.head()

# %% [markdown]
# We keep a quarter of the wines aside, with their true cultivar, only to
# check the final model; everything before that uses annotations alone.

# %%
X_train, X_test, Z_train, Z_test, _, truth_test = train_test_split(
    X, Z, truth, test_size=0.25, random_state=0
)

# %% [markdown]
# ## 2. A pipeline
#
# `AnnotMixClassifier` takes `Z` where other classifiers take `y`, so it fits
# into a pipeline like any of them.

# %%
pipe = make_pipeline(
    StandardScaler(),
    AnnotMixClassifier(random_state=0, **SETTINGS),
)

# %% [markdown]
# ## 3. Choosing `alpha` on held-out annotations
#
# `AnnotationStratifiedKFold` spreads the labelled wines and their
# majority-vote classes evenly over the folds. Every candidate is scored on
# the held-out folds with two scorers: the accuracy of its predictions against
# the observed annotations (what `score` returns, used to pick the best), and
# the mean log-likelihood of those annotations under the fitted model.

# %%
search = GridSearchCV(
    pipe,
    {"annotmixclassifier__alpha": [0.0, 0.5, 1.0, 2.0]},
    cv=AnnotationStratifiedKFold(n_splits=3 if FAST else 5, shuffle=True, random_state=0),
    scoring={"accuracy": annotation_accuracy_scorer, "log_likelihood": annotation_log_likelihood_scorer},
    refit="accuracy",
)
search.fit(X_train, Z_train)
results = pd.DataFrame(search.cv_results_)
results[["param_annotmixclassifier__alpha", "mean_test_accuracy", "mean_test_log_likelihood"]]

# %%
print("chosen:", search.best_params_)

# %% [markdown]
# ## 4. What the model learned about the annotators
#
# `annotator_confusion_[m, y, z]` estimates how often worker `m` says `z` when
# the truth is `y`; its names come from the columns of `Z`.

# %%
model = search.best_estimator_[-1]
classes = model.classes_
best, worst = np.argmax(model.annotator_accuracy_), np.argmin(model.annotator_accuracy_)
for m in (best, worst):
    print(f"\n{model.annotator_names_[m]}: estimated accuracy {model.annotator_accuracy_[m]:.2f}")
    print(pd.DataFrame(model.annotator_confusion_[m], index=classes, columns=classes).round(2))

# %% [markdown]
# Since the annotators were simulated, we can set the estimates next to the
# truth (the true matrices use the cultivar order of `cultivars`; reorder them
# to `classes_`).

# %%
order = [list(cultivars).index(c) for c in classes]
true_diagonal = np.diagonal(true_confusion[:, order][:, :, order], axis1=1, axis2=2)
pd.DataFrame(
    {
        "labels": model.n_labels_per_annotator_,
        "estimated accuracy": model.annotator_accuracy_.round(2),
        "mean true per-class accuracy": true_diagonal.mean(1).round(2),
    },
    index=model.annotator_names_,
)

# %% [markdown]
# Finally the test wines, against their true cultivars, next to a majority
# vote of the same annotations.

# %%
test_accuracy = np.mean(search.predict(X_test) == truth_test.to_numpy())
vote = majority_vote(Z_test, missing_label=None, random_state=0)
labelled = pd.notna(vote)
vote_accuracy = np.mean(vote[labelled] == truth_test.to_numpy()[labelled])
print(f"annot-mix on test wines: {test_accuracy:.3f}")
print(f"majority vote of their annotations: {vote_accuracy:.3f}")
