# %% [markdown]
# # Music genres: learning from real crowd workers
#
# Rodrigues et al. (2013) had 700 songs labelled with one of ten genres by 44
# workers on Amazon Mechanical Turk: 2,945 labels, one to seven per song, and
# only 56 % of them correct. This walk-through trains `AnnotMixClassifier` on
# those crowd labels alone, compares it with a network trained on the
# majority vote, and looks at what the model learned about every worker.
#
# Set `SKANNOT_EXAMPLE_FAST=1` to run it with a few epochs only.

# %%
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from skannot import AnnotMixClassifier
from skannot.annotations import majority_vote
from skannot.datasets import fetch_music_genres
from skannot.plotting import plot_annotator_accuracy, plot_annotator_confusion

FAST = os.environ.get("SKANNOT_EXAMPLE_FAST") == "1"
EPOCHS = 3 if FAST else 50
if FAST:  # a few epochs cannot converge, and need not
    warnings.simplefilter("ignore", ConvergenceWarning)

# %% [markdown]
# ## The data
#
# `fetch_music_genres` downloads the original archive once into the data
# home, `$SKANNOT_DATA` (or `~/skannot_data`), and checks it. A data home that
# already holds the three CSV files, directly or in a `music_genres` folder, is
# read without a download: `SKANNOT_DATA=../shared/data` uses a copy next to
# this repository.

# %%
data = fetch_music_genres()
X, Z, y_gold = data.data, data.annotations, data.target
observed = Z >= 0
print(f"{X.shape[0]} songs, {X.shape[1]} features, {Z.shape[1]} workers, {observed.sum()} labels")
print(f"labels per song: {observed.sum(1).min()} to {observed.sum(1).max()}")
print(f"labels per worker: {observed.sum(0).min()} to {observed.sum(0).max()}")
gold = np.broadcast_to(y_gold[:, None], Z.shape)
print(f"share of correct crowd labels: {(Z[observed] == gold[observed]).mean():.3f}")

# %% [markdown]
# The gold training labels are used below only to judge what the model
# learned, never to train it. As in the annot-mix paper, 200 of the 300 test
# songs are kept for testing and the features are standardised with
# training statistics.

# %%
_, test = train_test_split(np.arange(300), train_size=100, random_state=0, stratify=data.target_test)
scaler = StandardScaler().fit(X)
X_train, X_test, y_test = scaler.transform(X), scaler.transform(data.data_test[test]), data.target_test[test]

# %% [markdown]
# ## Annot-mix against majority vote

# %%
clf = AnnotMixClassifier(max_epochs=EPOCHS, random_state=0).fit(X_train, Z)
print(f"annot-mix test accuracy:          {clf.score(X_test, y_test):.3f}")

y_vote = majority_vote(Z, random_state=0)
mlp = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=EPOCHS, random_state=0)
mlp.fit(X_train, y_vote)
print(f"MLP on majority vote test accuracy: {mlp.score(X_test, y_test):.3f}")

# %% [markdown]
# ## What the model learned about the workers
#
# `annotator_accuracy_` is the model's estimate of how often each worker is
# right. Against the workers' accuracy on the gold labels, the good workers
# and the spammers are told apart without any gold label.

# %%
true_accuracy = np.array([(Z[observed[:, m], m] == y_gold[observed[:, m]]).mean() for m in range(Z.shape[1])])
ax = plot_annotator_accuracy(clf, true=true_accuracy, annotator_names=np.arange(Z.shape[1]))
ax.set_title(f"44 AMT workers: {ax.get_title()}")
plt.show()

# %% [markdown]
# The confusion matrices of the four busiest workers: estimated by the model
# (top) and counted from the gold labels (bottom). Rows are the true genre,
# columns the worker's answer; blank rows are genres a worker never saw.

# %%
busiest = np.argsort(-observed.sum(0))[:4]
counts = np.zeros((Z.shape[1], 10, 10))
rows, cols = np.nonzero(observed)
np.add.at(counts, (cols, y_gold[rows], Z[rows, cols]), 1)
with np.errstate(invalid="ignore"):
    counted = counts / counts.sum(-1, keepdims=True)
fig = plot_annotator_confusion(
    clf, annotators=busiest, true=counted, classes=data.target_names, annotator_names=data.annotator_ids
)
plt.show()
