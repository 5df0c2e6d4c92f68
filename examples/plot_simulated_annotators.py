# %% [markdown]
# # Simulated annotators: does the model recover the truth?
#
# With simulated annotators the true confusion matrices are known, so what
# `AnnotMixClassifier` estimates can be checked. `make_crowd_classification`
# draws a classification problem and ten annotators of four kinds:
#
# - four **class-dependent** annotators with their own confusion matrix,
# - three **instance-dependent** ones, experts in half of the feature space
#   and guessing elsewhere,
# - two **adversaries**, who never give the true label but answer a fixed
#   wrong class most of the time,
# - one **spammer** who labels uniformly at random.
#
# Every instance gets two to four labels. Set `SKANNOT_EXAMPLE_FAST=1` to run
# it with a few epochs only.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from skannot import AnnotMixClassifier
from skannot.annotations import majority_vote
from skannot.datasets import make_crowd_classification
from skannot.plotting import plot_annotator_accuracy, plot_annotator_confusion

FAST = os.environ.get("SKANNOT_EXAMPLE_FAST") == "1"
EPOCHS = 3 if FAST else 50
N_SAMPLES = 500 if FAST else 3000

kinds = ["class"] * 4 + ["instance"] * 3 + ["adversarial"] * 2 + ["random"]
crowd = make_crowd_classification(
    n_samples=N_SAMPLES,
    n_features=10,
    n_classes=4,
    class_sep=1.5,
    n_annotators=10,
    kinds=kinds,
    accuracy=(0.6, 0.9),
    labels_per_sample=(2, 4),
    random_state=0,
)
X_train, X_test, Z_train, _, y_train, y_test = train_test_split(
    crowd.data, crowd.annotations, crowd.target, test_size=0.3, random_state=0
)
observed = Z_train >= 0
print(f"{observed.sum()} labels on {len(X_train)} training instances")
truth = np.broadcast_to(y_train[:, None], Z_train.shape)
print(f"share of correct labels: {(Z_train[observed] == truth[observed]).mean():.3f}")
vote_accuracy = (majority_vote(Z_train, random_state=0) == y_train).mean()
print(f"majority vote accuracy on the training instances: {vote_accuracy:.3f}")

# %% [markdown]
# ## Fit on the annotations only

# %%
clf = AnnotMixClassifier(max_epochs=EPOCHS, random_state=0).fit(X_train, Z_train)
print(f"test accuracy: {clf.score(X_test, y_test):.3f}")

# %% [markdown]
# ## Estimated against true confusion matrices
#
# One annotator of each kind: estimated (top) and true (bottom). For the
# instance-dependent annotator the true matrix is its confusion averaged over
# the instances of each class, which is also how `annotator_confusion_`
# summarises the per-instance estimates. The adversary's off-diagonal
# pattern is recovered, which lets the model use its labels instead of being
# misled by them.

# %%
shown = [kinds.index(kind) for kind in ("class", "instance", "adversarial", "random")]
fig = plot_annotator_confusion(clf, annotators=shown, true=crowd.confusion)
plt.show()

error = np.abs(clf.annotator_confusion_ - crowd.confusion).sum(-1).mean(-1) / 2
for m, kind in enumerate(kinds):
    print(f"annotator {m} ({kind:>11}): mean total-variation distance to the truth {error[m]:.3f}")

# %% [markdown]
# ## Accuracy per annotator and per instance
#
# The true accuracy of an annotator is the mean of its confusion diagonal
# over the classes, weighted by how often each class occurs.

# %%
class_share = np.bincount(crowd.target, minlength=4) / len(crowd.target)
true_accuracy = np.diagonal(crowd.confusion, axis1=1, axis2=2) @ class_share
ax = plot_annotator_accuracy(clf, true=true_accuracy)
plt.show()

# %% [markdown]
# The model's annotator head is conditioned on the instance, so it can in
# principle learn *where* the instance-dependent annotators are reliable.
# `predict_annotator_proba` gives `P(z | x, a)`; its value at the true class is
# the estimated probability that annotator `a` labels `x` correctly, which the
# simulation knows as `correct_proba`. The boxes compare it inside and outside
# each annotator's regions of expertise. With a few hundred labels per
# annotator, as here, the separation is partial at best: instance-dependent
# noise needs many more labels per annotator to be learned than a confusion
# matrix does.

# %%
_, test_index = train_test_split(np.arange(len(crowd.target)), test_size=0.3, random_state=0)
proba = clf.predict_annotator_proba(X_test)
said_true = proba[np.arange(len(X_test)), :, y_test]
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4), sharey=True, layout="constrained")
for ax, m in zip(axes, np.flatnonzero(np.array(kinds) == "instance")):
    expert = crowd.correct_proba[test_index, m] > 0.5
    ax.boxplot([said_true[~expert, m], said_true[expert, m]], tick_labels=["outside", "inside"])
    ax.set_title(f"annotator {m}")
    ax.set_xlabel("region of expertise")
axes[0].set_ylabel("estimated P(correct label | x)")
plt.show()
